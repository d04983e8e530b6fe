"""The ops files: Grafana dashboard, Prometheus rules and RabbitMQ definitions.

The metric names, labels and label values are Hookline's metric contract; the dashboard and
the rules may use nothing else, and never a per-endpoint, per-tenant or URL label.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker

from actors.broker import Publisher
from actors.middleware import QUARANTINE_QUEUE, Quarantine
from actors.middleware.policy import QUARANTINE_BOUND
from actors.registry import declare_actors
from engine.settings import Settings

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "hookline.json"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
DEFINITIONS = OPS / "rabbitmq" / "definitions.json"
CONSUMER_TIMEOUT = OPS / "rabbitmq" / "consumer-timeout.json"

# The API's words for why an attempt failed (`GET /v1/deliveries/{id}/attempts`).
ERROR_CLASSES = frozenset(
    c
    for c in json.loads((OPS.parent / "schemas" / "attempt.schema.json").read_text())["properties"][
        "error_class"
    ]["enum"]
    if c is not None
)

# name -> (type, labels)
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "hookline_http_requests_total": ("counter", frozenset({"method", "route", "status"})),
    "hookline_http_request_duration_seconds": ("histogram", frozenset({"method", "route"})),
    "hookline_events_ingested_total": ("counter", frozenset({"result"})),
    "hookline_attempts_total": ("counter", frozenset({"result", "status_class"})),
    "hookline_attempt_duration_seconds": ("histogram", frozenset()),
    "hookline_deliveries_total": ("counter", frozenset({"outcome"})),
    "hookline_delivery_lag_seconds": ("histogram", frozenset()),
    "hookline_scheduled_backlog": ("gauge", frozenset()),
    "hookline_due_backlog": ("gauge", frozenset()),
    "hookline_quarantine_size": ("gauge", frozenset()),
    "hookline_breakers": ("gauge", frozenset({"state"})),
    "hookline_scheduler_published_total": ("counter", frozenset({"kind"})),
    "hookline_scheduler_leader": ("gauge", frozenset()),
    "hookline_alerts_total": ("counter", frozenset({"channel", "result"})),
    "hookline_throttled_deliveries": ("gauge", frozenset()),
    "hookline_flow_released_total": ("counter", frozenset({"by"})),
    "hookline_flow_slots_missed_total": ("counter", frozenset({"by"})),
    "hookline_endpoint_concurrency_limit": ("gauge", frozenset({"endpoint_id"})),
}
# (metric, label) -> every value the code emits
VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("hookline_events_ingested_total", "result"): frozenset({"created", "duplicate"}),
    # One vocabulary: an attempt's failure is named as the API's `error_class` names it.
    ("hookline_attempts_total", "result"): frozenset({"success"}) | ERROR_CLASSES,
    ("hookline_attempts_total", "status_class"): frozenset(
        {"1xx", "2xx", "3xx", "4xx", "5xx", "none"}
    ),
    ("hookline_deliveries_total", "outcome"): frozenset(
        {"succeeded", "retried", "quarantined", "cancelled"}
    ),
    ("hookline_breakers", "state"): frozenset({"closed", "open", "half_open"}),
    ("hookline_scheduler_published_total", "kind"): frozenset({"due", "recovered", "fan_out"}),
    ("hookline_alerts_total", "channel"): frozenset({"slack", "email", "pagerduty", "webhook"}),
    ("hookline_alerts_total", "result"): frozenset({"sent", "failed"}),
    ("hookline_flow_released_total", "by"): frozenset({"scheduler", "worker", "fan_out"}),
}
JOBS = frozenset({"hookline-api", "hookline-worker", "hookline-scheduler", "hookline-supervisor"})
TARGET_LABELS = frozenset({"job", "instance"})
ALL_LABELS = frozenset().union(*(labels for _, labels in CONTRACT.values())) | TARGET_LABELS

METRIC = re.compile(r"\bhookline_\w+")
SELECTOR = re.compile(r"\b(hookline_\w+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


# ------------------------------------------------------------------ helpers


def contract_metric(series: str) -> str | None:
    """The contract metric a series name belongs to, or None if it belongs to none."""
    if series in CONTRACT:
        return None if CONTRACT[series][0] == "histogram" else series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and CONTRACT.get(base, ("",))[0] == "histogram":
            return base
    return None


def problems_in(expr: str) -> list[str]:
    """What in one PromQL expression breaks the metric contract."""
    problems = [
        f"{name}: not in the metric contract"
        for name in METRIC.findall(expr)
        if contract_metric(name) is None
    ]
    for name, matchers in SELECTOR.findall(expr):
        problems += _matcher_problems(name, matchers)
    for grouping in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in ALL_LABELS | {"le"}:
                problems.append(f"grouping by {label!r}: not a contract label")
    return problems


def _matcher_problems(name: str, matchers: str) -> list[str]:
    problems = []
    if name == "up":
        metric, labels = "up", TARGET_LABELS
    else:
        metric = contract_metric(name) or name
        labels = CONTRACT.get(metric, ("", frozenset()))[1] | TARGET_LABELS
        if name.endswith("_bucket"):
            labels |= {"le"}
    for label, op, value in MATCHER.findall(matchers):
        if label not in labels:
            problems.append(f"{name}{{{label}...}}: {metric} has no label {label!r}")
            continue
        allowed = JOBS if (metric, label) == ("up", "job") else VALUES.get((metric, label))
        if allowed is None or op in ("!=", "!~"):
            continue
        wanted = value.split("|") if op == "=~" else [value]
        if op == "=~" and not re.fullmatch(r"[\w|-]+", value):
            continue  # a real regex: not a list of values
        problems += [f"{name}{{{label}={v!r}}}: not a value" for v in wanted if v not in allowed]
    return problems


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def yaml_exprs(text: str) -> list[str]:
    """The `expr:` values of a rules file, inline or block scalars (no YAML library needed)."""
    exprs = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[index])
        index += 1
        if not match:
            continue
        indent, rest = len(match.group(1)), match.group(2).strip()
        if rest[:1] not in ("|", ">"):
            exprs.append(rest.strip("'\""))
            continue
        block = []
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            block.append(lines[index].strip())
            index += 1
        exprs.append(" ".join(block).strip())
    return exprs


def rule_blocks(text: str) -> dict[str, str]:
    """Alert name -> the text of its rule."""
    parts = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
    return {part.split()[0]: part for part in parts}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads(DEFINITIONS.read_text())


# ------------------------------------------------------------------ Grafana


def test_the_dashboard_has_the_top_level_keys(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "Hookline"
    assert dashboard["uid"] == "hookline"
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["panels"]
    assert dashboard.get("id") is None  # imports as a new dashboard anywhere
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_queries_the_templated_prometheus(dashboard: dict[str, Any]) -> None:
    panels = [p for p in walk_panels(dashboard["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in walk_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t.get("expr", "").strip() for t in panel["targets"]), panel["title"]
        for holder in (panel, *panel["targets"]):
            assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_uses_only_the_metric_contract(dashboard: dict[str, Any]) -> None:
    exprs = [
        t["expr"]
        for p in walk_panels(dashboard["panels"])
        for t in p.get("targets", [])
        if "expr" in t
    ] + [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    assert [problem for expr in exprs for problem in problems_in(expr)] == []
    used = {contract_metric(name) for expr in exprs for name in METRIC.findall(expr)}
    assert used == set(CONTRACT), "every contract metric has a panel"


def test_every_process_kind_shows_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    """Each scrape job (every kind of Hookline process) has its "up" on the dashboard."""
    exprs = " ".join(
        t.get("expr", "") for p in walk_panels(dashboard["panels"]) for t in p.get("targets", [])
    )
    shown = {job for job in JOBS if re.search(rf"up\{{[^}}]*{job}\b", exprs)}
    assert shown == JOBS


def test_every_process_kind_has_a_down_and_a_none_up_alert() -> None:
    rules = RULES.read_text()
    for job in JOBS:
        assert f'up{{job="{job}"}} == 0' in rules, job
        assert f'absent(up{{job="{job}"}} == 1)' in rules or job == "hookline-scheduler", job
    assert "absent(hookline_scheduler_leader)" in rules  # the scheduler's: no leader at all


def test_the_contract_check_catches_mistakes() -> None:
    assert problems_in('rate(hookline_attempt_duration_seconds_bucket{le="1"}[5m])') == []
    assert problems_in("rate(hookline_attempts[5m])") != []  # the counter is _total
    assert problems_in("hookline_delivery_lag_seconds") != []  # a histogram has no bare series
    assert problems_in('hookline_attempts_total{result="ok"}') != []
    assert problems_in('hookline_attempts_total{endpoint_id="ep_1"}') != []
    assert problems_in("sum by (tenant_id) (rate(hookline_attempts_total[5m]))") != []
    assert problems_in('up{job="worker"}') != []
    assert problems_in('sum(rate(hookline_attempts_total{result=~"success|dns"}[5m]))') == []
    assert problems_in('hookline_attempts_total{result="http_5xx"}') != []  # the API's words
    assert problems_in('hookline_http_requests_total{status=~"5.."}') == []


# ------------------------------------------------------------------ Prometheus


def test_the_rules_use_only_the_metric_contract() -> None:
    exprs = yaml_exprs(RULES.read_text())
    assert len(exprs) == len(rule_blocks(RULES.read_text()))
    assert [problem for expr in exprs for problem in problems_in(expr)] == []
    series = re.findall(r"series:\s*'([^']*)'", RULE_TESTS.read_text())
    assert series
    assert [problem for s in series for problem in problems_in(s)] == []


def test_every_rule_has_for_severity_and_annotations() -> None:
    rules = rule_blocks(RULES.read_text())
    assert {
        "HooklineDeliveryFailureRatioHigh",
        "HooklineDeliveryLagHigh",
        "HooklineDueBacklogGrowing",
        "HooklineQuarantineGrowing",
        "HooklineWorkerDown",
        "HooklineNoWorkers",
        "HooklineSchedulerNoLeader",
        "HooklineApi5xxRatioHigh",
    } <= set(rules)
    for name, text in rules.items():
        assert re.search(r"^\s*for:\s*\d+[smh]", text, re.M), name
        assert re.search(r"^\s*severity:\s*(warning|critical)\s*$", text, re.M), name
        assert re.search(r"^\s*summary:", text, re.M), name
        assert re.search(r"^\s*description:", text, re.M), name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = re.findall(
        r"alertname:\s*(\w+)\s*\n\s*exp_alerts:[ \t]*(\[\])?", RULE_TESTS.read_text()
    )
    for name in rule_blocks(RULES.read_text()):
        kinds = {bool(empty) for alert, empty in cases if alert == name}
        assert kinds == {True, False}, f"{name}: needs a case that fires and one that does not"


def test_the_scrape_config_has_a_job_per_role() -> None:
    text = PROMETHEUS_CONFIG.read_text()
    assert set(re.findall(r"job_name:\s*(\S+)", text)) == JOBS
    assert re.search(r"rule_files:\s*\n\s*-\s*alerts\.yml", text)


def test_the_scrape_config_names_real_settings_and_their_defaults() -> None:
    """Each job's comment names the setting its target comes from, and the target its default."""
    text = PROMETHEUS_CONFIG.read_text()
    defaults = Settings()
    named = re.findall(r"(HOOKLINE_\w+) \(([\d.:]+) by default\)", text)
    assert {name for name, _ in named} == {
        "HOOKLINE_BIND",
        "HOOKLINE_WORKER_METRICS_BIND",
        "HOOKLINE_SCHEDULER_METRICS_BIND",
        "HOOKLINE_SUPERVISOR_METRICS_BIND",
    }
    targets = re.findall(r'^\s*- targets: \["([\d.:]+)"\]', text, flags=re.M)  # not comments
    for (name, shown), target in zip(named, targets, strict=True):
        field = name.removeprefix("HOOKLINE_").lower()
        assert getattr(defaults, field) == shown == target, name
    assert "dramatiq_prom" not in text  # dramatiq's own exporter is not what Hookline runs


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (.ci/run installs it and runs it too)")
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(PROMETHEUS_CONFIG)],
        ["test", "rules", str(RULE_TESTS)],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


# ------------------------------------------------------------------ RabbitMQ


class _RecordingChannel:
    """Stands in for a pika channel: records queue declares, never connects."""

    def __init__(self) -> None:
        self.declared: dict[str, dict[str, Any]] = {}

    def queue_declare(
        self, queue: str, durable: bool = False, arguments: dict[str, Any] | None = None
    ) -> None:
        self.declared[queue] = {"durable": durable, "arguments": dict(arguments or {})}


def _declared_by_hookline() -> dict[str, dict[str, Any]]:
    """Every queue Hookline's code declares, with the arguments it declares it with."""
    broker = RabbitmqBroker(
        url="amqp://guest:guest@127.0.0.1:1/hookline", middleware=[Quarantine()]
    )  # as the scheduler builds it
    channel = _RecordingChannel()
    broker.state.channel = channel  # the broker's per-thread channel: no connection is made
    declare_actors(broker, None)
    for queue in sorted(broker.get_declared_queues()):
        broker._declare_queue(queue)
        broker._declare_dq_queue(queue)
        broker._declare_xq_queue(queue)
    Publisher(broker, Settings()).publish_quarantine([])
    assert broker.connections == set()
    return channel.declared


def test_the_definitions_declare_what_hookline_declares(definitions: dict[str, Any]) -> None:
    declared = _declared_by_hookline()
    assert {"hookline.fan_out", "hookline.deliver", QUARANTINE_QUEUE} <= set(declared)
    queues = {q["name"]: q for q in definitions["queues"]}
    assert set(queues) == set(declared)
    for name, want in declared.items():
        queue = queues[name]
        assert queue["vhost"] == "hookline"
        assert queue["durable"] is want["durable"] is True, name
        assert queue["auto_delete"] is False, name
        # Byte for byte: RabbitMQ refuses a redeclare with any other arguments.
        assert queue["arguments"] == want["arguments"], name
        assert json.dumps(queue["arguments"], sort_keys=True) == json.dumps(
            want["arguments"], sort_keys=True
        )
    assert queues["hookline.deliver.XQ"]["arguments"] == {"x-message-ttl": DEAD_MESSAGE_TTL}
    assert queues[QUARANTINE_QUEUE]["arguments"] == QUARANTINE_BOUND, "bounded by Hookline"


def test_the_definitions_hold_no_credentials(definitions: dict[str, Any]) -> None:
    assert not {"users", "permissions", "topic_permissions"} & set(definitions)
    assert [v["name"] for v in definitions["vhosts"]] == ["hookline"]
    assert definitions["exchanges"] == [] and definitions["bindings"] == []


def _policy_for(policies: list[dict[str, Any]], queue: str) -> dict[str, Any] | None:
    """The policy RabbitMQ applies to a queue: the highest-priority match."""
    matching = [p for p in policies if re.search(p["pattern"], queue)]
    return max(matching, key=lambda p: p["priority"], default=None)


def test_only_the_quarantine_has_a_length_limit(definitions: dict[str, Any]) -> None:
    policies = definitions["policies"]
    assert all(p["vhost"] == "hookline" and p["apply-to"] == "queues" for p in policies)
    for queue in (q["name"] for q in definitions["queues"]):
        policy = _policy_for(policies, queue)
        limits = {"max-length", "max-length-bytes", "overflow"} & set(
            (policy or {}).get("definition", {})
        )
        if queue == QUARANTINE_QUEUE:
            assert policy is not None
            assert policy["definition"]["overflow"] == "drop-head"
            assert isinstance(policy["definition"]["max-length"], int)
        else:
            assert not limits, queue


def test_the_consumer_timeout_policy_covers_the_work_queues(
    definitions: dict[str, Any],
) -> None:
    overlay = json.loads(CONSUMER_TIMEOUT.read_text())
    assert set(overlay) == {"policies"}
    policies = definitions["policies"] + overlay["policies"]
    work = [
        q["name"]
        for q in definitions["queues"]
        if q["name"] != QUARANTINE_QUEUE and not q["name"].endswith(".XQ")
    ]
    assert "hookline.deliver.DQ" in work
    for queue in work:
        policy = _policy_for(policies, queue)
        assert policy is not None, queue
        timeout = policy["definition"]["consumer-timeout"]
        assert isinstance(timeout, int) and timeout >= 30 * 60 * 1000, queue
    # The quarantine guard must still win on the quarantine queue.
    assert _policy_for(policies, QUARANTINE_QUEUE) in definitions["policies"]
