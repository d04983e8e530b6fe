"""Medians with min and max, the issue's targets, the table on stdout and the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

# (scenario, metric, unit, label) for the table, in order; `{m}` stands for each fan-out.
ROWS = (
    ("ingest", "events_per_s", "ev/s", "ingest: accepted (202, committed + confirmed)"),
    ("ingest", "p50_ms", "ms", "ingest: latency p50"),
    ("ingest", "p99_ms", "ms", "ingest: latency p99"),
    ("batch_ingest", "events_per_s", "ev/s", "batch ingest: events accepted"),
    ("batch_ingest", "p50_ms", "ms", "batch ingest: latency p50, per batch"),
    ("batch_ingest", "p99_ms", "ms", "batch ingest: latency p99, per batch"),
    ("ingest_schema", "plain_events_per_s", "ev/s", "ingest, 20 properties, no schema"),
    ("ingest_schema", "schema_events_per_s", "ev/s", "ingest, 20 properties, with their schema"),
    ("ingest_schema", "ratio_pct", "%", "ingest with a 20-property schema, of without"),
    ("baseline", "deliveries_per_s", "dlv/s", "naive baseline: deliveries/s"),
    ("e2e_fanout_{m}", "deliveries_per_s", "dlv/s", "end to end, fan-out {m}: deliveries/s"),
    (
        "e2e_fanout_{m}",
        "pg_transactions_per_delivery",
        "xact",
        "end to end, fan-out {m}: PostgreSQL transactions per delivery",
    ),
    ("e2e_shared_host", "deliveries_per_s", "dlv/s", "end to end, fan-out {f}, one host"),
    ("e2e_transform", "deliveries_per_s", "dlv/s", "end to end, fan-out {f}, Slack transform"),
    ("drain", "deliveries_per_s", "dlv/s", "drain, fan-out {f}: deliveries/s"),
    ("drain", "from_start_per_s", "dlv/s", "drain, from the worker's start"),
    ("lag", "p50_ms", "ms", "lag at half load: p50"),
    ("lag", "p99_ms", "ms", "lag at half load: p99"),
    ("lag", "to_fan_out_p50_ms", "ms", "lag: event stored to fan-out, p50"),
    ("lag", "fan_out_to_attempt_p50_ms", "ms", "lag: fan-out to first attempt, p50"),
    ("isolation", "healthy_deliveries_per_s", "dlv/s", "isolation: healthy dlv/s, 10% hang"),
    ("isolation", "all_healthy_deliveries_per_s", "dlv/s", "isolation: same endpoints, none hang"),
    ("noisy_neighbour", "b_p50_ms", "ms", "noisy neighbour: B's lag to a first attempt, p50"),
    ("noisy_neighbour", "b_p99_ms", "ms", "noisy neighbour: B's lag to a first attempt, p99"),
    ("noisy_neighbour", "b_without_first_attempt", "ev", "noisy neighbour: B's not attempted"),
    ("noisy_neighbour", "b_max_ms", "ms", "noisy neighbour: B's lag, longest"),
    (
        "noisy_neighbour",
        "a_requests_per_s",
        "req/s",
        "noisy neighbour: A's requests/s at the receiver (200 ms each)",
    ),
    ("noisy_neighbour", "a_timed_out_attempts", "att", "noisy neighbour: A's timed out"),
    ("noisy_neighbour", "a_open_at_window_start", "dlv", "noisy neighbour: A's backlog before"),
    ("noisy_neighbour", "a_open_at_window_end", "dlv", "noisy neighbour: A's backlog after"),
    ("fifo", "deliveries_per_s", "dlv/s", "one FIFO endpoint: deliveries/s"),
    ("fifo", "out_of_order", "att", "one FIFO endpoint: first attempts out of event order"),
    (
        "throttled",
        "throttled_busiest_second",
        "req/s",
        "throttled endpoints (50/s): busiest second at the receiver",
    ),
    ("throttled", "throttled_median_per_s", "req/s", "throttled endpoints: median second"),
    (
        "throttled",
        "unthrottled_deliveries_per_s",
        "dlv/s",
        "unthrottled endpoints beside them: deliveries/s",
    ),
    (
        "throttled",
        "unthrottled_per_endpoint_per_s",
        "dlv/s",
        "unthrottled endpoints beside them: deliveries/s per endpoint",
    ),
    (
        "throttled",
        "reference_per_endpoint_per_s",
        "dlv/s",
        "all-unthrottled run: deliveries/s per endpoint",
    ),
    (
        "throttled",
        "unthrottled_ratio",
        "x",
        "unthrottled endpoint beside throttled, of one in an all-unthrottled run",
    ),
    ("retention", "drop_day_s", "s", "retention: dropping a day's partitions"),
    ("retention", "dropped_rows", "rows", "retention: rows the drop removed"),
    ("retention", "batch_deleted_rows", "rows", "retention: rows batched deletes removed in 5 s"),
    ("retention", "drop_held_s", "s", "retention: the drop's locks held"),
    ("retention", "live_p99_ms", "ms", "retention: lag to a first attempt meanwhile, p99"),
    ("retention", "live_during_drop_p99_ms", "ms", "retention: that lag, events sent in the drop"),
    (
        "retention",
        "live_during_purge_p99_ms",
        "ms",
        "retention: that lag, events sent in the batched purges",
    ),
    ("backlog", "rss_max_process_mib", "MiB", "worker RSS, largest process"),
    ("backlog", "rss_max_total_mib", "MiB", "worker RSS, process group total"),
    ("backlog", "rss_backlog_max_process_mib", "MiB", "worker RSS, largest process, backlog"),
    ("backlog", "rss_backlog_max_total_mib", "MiB", "worker RSS, group total, backlog"),
    ("backlog", "e2e_backlog_deliveries_per_s", "dlv/s", "end to end with the backlog"),
    ("backlog", "dispatch_due_per_s", "dlv/s", "scheduler: due deliveries/s"),
)


CPU_KINDS = (
    "api",
    "worker",
    "scheduler",
    "supervisor",
    "receiver",
    "naive_worker",
    "postgres",
    "rabbitmq",
)
CPU_UNITS = (
    ("ingest", "event", ""),
    ("batch_ingest", "event", ""),
    ("e2e_fanout_{m}", "delivery", ""),
    ("e2e_shared_host", "delivery", ""),
    ("e2e_transform", "delivery", ""),
    ("drain", "delivery", ""),
    ("baseline", "delivery", ""),
    ("backlog", "due delivery dispatched", "dispatch_"),
)
# Issue 15's goals for end to end against the naive baseline, by fan-out.
E2E_GOALS = {10: 5.0, 2: 3.0, 1: 2.0}


def _expand(scenario: str, label: str, fanouts: list[int]) -> list[tuple[str, str]]:
    """A row's (scenario, label) for each fan-out it stands for."""
    first = fanouts[0] if fanouts else 10
    if "{m}" not in scenario:
        return [(scenario, label.replace("{f}", str(first)))]
    return [(scenario.replace("{m}", str(m)), label.replace("{m}", str(m))) for m in fanouts]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of some runs."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def summarise(runs: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """The spread of each key over the runs, and of every `cpu_*` key they share."""
    cpu = [k for k in runs[0] if k.startswith("cpu_") and all(k in run for run in runs)]
    return {key: spread([float(run[key]) for run in runs]) for key in (*keys, *cpu)}


def _target(name: str, value: float, op: str, goal: float, unit: str) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    if op == ">=":
        margin = value / goal - 1 if goal else 0.0
    else:
        margin = 1 - value / goal if goal else 0.0
    return {
        "target": name,
        "value": value,
        "op": op,
        "goal": goal,
        "unit": unit,
        "met": met,
        "margin_pct": round(margin * 100, 1),
    }


def targets(scenarios: dict[str, Any], fanouts: list[int]) -> list[dict[str, Any]]:
    """Each target of issue 15 (issue 6's kept) with this invocation's medians: met or missed."""

    def med(scenario: str, metric: str) -> float | None:
        values = scenarios.get(scenario, {}).get("summary", {}).get(metric)
        return None if values is None else float(values["median"])

    def worst(scenario: str, metric: str) -> float | None:
        values = scenarios.get(scenario, {}).get("summary", {}).get(metric)
        return None if values is None else float(values["max"])

    def value(scenario: str, key: str) -> float | None:
        found = scenarios.get(scenario, {}).get(key)
        return None if found is None else float(found)

    first = fanouts[0]
    rss = [med("backlog", "rss_max_process_mib"), med("backlog", "rss_backlog_max_process_mib")]
    change = value("backlog", "rss_change_pct")
    isolation = value("isolation", "ratio")
    wanted = [
        ("drain ≥ 6x the naive baseline", value("drain", "ratio_to_baseline"), ">=", 6.0, "x")
    ]
    wanted += [
        (
            f"end to end, fan-out {m} ≥ {E2E_GOALS[m]:g}x the naive baseline",
            value(f"e2e_fanout_{m}", "ratio_to_baseline"),
            ">=",
            E2E_GOALS[m],
            "x",
        )
        for m in fanouts
        if m in E2E_GOALS
    ]
    wanted += [
        (
            f"end to end, fan-out {first}, one host ≥ 4x the naive baseline",
            value("e2e_shared_host", "ratio_to_baseline"),
            ">=",
            4.0,
            "x",
        ),
        ("ingest ≥ 2,000 events/s", med("ingest", "events_per_s"), ">=", 2000, "ev/s"),
        ("ingest p99 ≤ 50 ms", med("ingest", "p99_ms"), "<=", 50, "ms"),
        (
            "batch ingest ≥ 10,000 events/s",
            med("batch_ingest", "events_per_s"),
            ">=",
            10000,
            "ev/s",
        ),
        ("batch ingest p99 ≤ 100 ms per batch", med("batch_ingest", "p99_ms"), "<=", 100, "ms"),
        (
            "ingest with a 20-property schema ≥ 90 % of without",
            med("ingest_schema", "ratio_pct"),
            ">=",
            90,
            "%",
        ),
        ("lag p50 ≤ 25 ms", med("lag", "p50_ms"), "<=", 25, "ms"),
        ("lag p99 ≤ 250 ms", med("lag", "p99_ms"), "<=", 250, "ms"),
        (
            "throttled: busiest second ≤ rate_limit_per_s + 10 %, in every run",
            worst("throttled", "throttled_busiest_second"),
            "<=",
            55,
            "req/s",
        ),
        (
            "unthrottled beside throttled ≥ 0.9x of all-unthrottled, per endpoint",
            med("throttled", "unthrottled_ratio"),
            ">=",
            0.9,
            "x",
        ),
        ("retention: a day dropped in ≤ 1 s", med("retention", "drop_day_s"), "<=", 1, "s"),
        (
            "retention: lag p99 ≤ 250 ms during the purge",
            med("retention", "live_p99_ms"),
            "<=",
            250,
            "ms",
        ),
        (
            "noisy neighbour: B's lag p99 ≤ 1 s",
            med("noisy_neighbour", "b_p99_ms"),
            "<=",
            1000,
            "ms",
        ),
        (
            "healthy keep ≥ 80 % with 10 % hanging",
            None if isolation is None else isolation * 100,
            ">=",
            80,
            "%",
        ),
        (
            "worker RSS ≤ 300 MB per process",
            None if None in rss else max(r for r in rss if r is not None),
            "<=",
            300 * 1e6 / 2**20,
            "MiB",
        ),
        (
            "worker RSS unchanged (±10 %) with the backlog",
            None if change is None else abs(change),
            "<=",
            10,
            "%",
        ),
        (
            "scheduler ≥ 5,000 due deliveries/s",
            med("backlog", "dispatch_due_per_s"),
            ">=",
            5000,
            "dlv/s",
        ),
    ]
    return [
        _target(name, found, op, goal, unit)
        for name, found, op, goal, unit in wanted
        if found is not None
    ]


def machine(pg_version: str, rabbitmq_version: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": pg_version,
        "rabbitmq": rabbitmq_version,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
        "speed_gauge_ms_at_start": speed_gauge_ms(),
    }


def speed_gauge_ms() -> float:
    """CPU ms for a fixed pure-Python loop, best of 5: how fast the box is now.

    The shared machine's speed drifts (the same naive worker took 1.4 to 4.3 ms
    of CPU per delivery on different days), and the absolute targets (events/s,
    milliseconds) move with it; this reading, taken at the start and the end,
    tells a slow box from slow code.
    """
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        total = 0
        for n in range(1_000_000):
            total += n
        best = min(best, time.process_time() - started)
    return round(best * 1000.0, 1)


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _margin(target: dict[str, Any]) -> str:
    """How far from the goal: a percentage, or for a missed ceiling, how many times over it."""
    if target["op"] == "<=" and not target["met"] and target["goal"]:
        return f"{target['value'] / target['goal']:.1f} x the limit"
    return f"{target['margin_pct']:+.1f} %"


def _ratios(scenario: dict[str, Any]) -> str:
    """A deliveries/s row's ratios: to the naive baseline, and (a transform's) to plain runs."""
    shown = []
    if scenario.get("ratio_to_baseline"):
        shown.append(f"{scenario['ratio_to_baseline']:.2f} x naive")
    if scenario.get("ratio_to_plain"):
        shown.append(f"{scenario['ratio_to_plain']:.2f} x without")
    return f" ({', '.join(shown)})" if shown else ""


def table(document: dict[str, Any]) -> str:
    """The results and the targets as a Markdown table."""
    runs = document["settings"]["runs"]
    lines = [
        f"| metric (median of {runs}) | median | min | max | unit |",
        "|---|---:|---:|---:|---|",
    ]
    scenarios = document["scenarios"]
    fanouts = document["settings"].get("fanouts", [10])
    for pattern, metric, unit, template in ROWS:
        for scenario, label in _expand(pattern, template, fanouts):
            values = scenarios.get(scenario, {}).get("summary", {}).get(metric)
            if values is None:
                continue
            shown = _ratios(scenarios[scenario]) if metric == "deliveries_per_s" else ""
            lines.append(
                f"| {label}{shown} | {_fmt(values['median'])} | {_fmt(values['min'])} "
                f"| {_fmt(values['max'])} | {unit} |"
            )
    lines += ["", "| CPU ms per unit, median | " + " | ".join(CPU_KINDS) + " |"]
    lines.append("|---|" + "---:|" * len(CPU_KINDS))
    for pattern, unit, prefix in CPU_UNITS:
        for scenario, _ in _expand(pattern, "", fanouts):
            summary = scenarios.get(scenario, {}).get("summary", {})
            cells = [summary.get(f"{prefix}cpu_{kind}_ms", {}).get("median") for kind in CPU_KINDS]
            if any(cell is not None for cell in cells):
                shown = ["" if cell is None else f"{cell:.2f}" for cell in cells]
                lines.append(f"| {scenario}, per {unit} | " + " | ".join(shown) + " |")
    lines += ["", "| target | measured | met | margin |", "|---|---:|---|---:|"]
    for target in document["targets"]:
        verdict = "met" if target["met"] else "**missed**"
        margin = _margin(target)
        lines.append(
            f"| {target['target']} | {_fmt(target['value'])} {target['unit']} "
            f"| {verdict} | {margin} |"
        )
    return "\n".join(lines)


def deviations(document: dict[str, Any]) -> str:
    """The settings this run changed from Hookline's defaults, one line, for beside the figures."""
    found = document.get("deviations", [])
    if not found:
        return "settings: Hookline's defaults, every one (the benchmark sets only " + (
            "; ".join(f"{k}: {v}" for k, v in document.get("required", {}).items()) + ")"
        )
    changed = ", ".join(f"{d['setting']}={d['value']} (default {d['default']})" for d in found)
    return f"settings: DEVIATIONS FROM THE DEFAULTS: {changed}"


def write(document: dict[str, Any], path: Path) -> None:
    """Write the JSON document (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def now_iso() -> str:
    """Now, in UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
