"""Prometheus metrics of workers and the scheduler, and their exposition servers.

Workers run as several dramatiq processes, so they write multiprocess files
(`PROMETHEUS_MULTIPROC_DIR`, set by `hookline worker` before the processes
start) and one forked server (`serve_worker_metrics`) sums them. The scheduler
is one process and serves its own registry. No label carries a URL, and only one an
id: `hookline_endpoint_concurrency_limit`, for the few endpoints adaptive control
limits now (at most `FLOW_GAUGE_ENDPOINTS`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as multiprocess_collector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from actors.signals import absorb_repeated_stops
from engine import logs
from engine.deliveries.client import Outcome
from engine.retry import Decision
from engine.settings import Settings

log = structlog.get_logger("hookline.metrics")

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# `result`: `success`, or the attempt's `error_class` as the API and the logs name it;
# `status_class`: the answer's (`2xx` ... `5xx`), `none` when there was no answer.
ATTEMPTS = Counter(
    "hookline_attempts_total",
    "Delivery attempts, by result (success or the error class) and the answer's status class.",
    ["result", "status_class"],
)
ATTEMPT_DURATION = Histogram(
    "hookline_attempt_duration_seconds", "Time of one attempt, connect to answer.", buckets=_SECONDS
)
DELIVERIES = Counter(
    "hookline_deliveries_total", "Delivery state changes after an attempt.", ["outcome"]
)
LAG = Histogram(
    "hookline_delivery_lag_seconds",
    "From an event's acceptance to its delivery's first attempt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0),
)
SCHEDULER_PUBLISHED = Counter(
    "hookline_scheduler_published_total", "Messages the scheduler published, by kind.", ["kind"]
)
ALERTS = Counter(
    "hookline_alerts_total", "Alerts sent, by channel and result.", ["channel", "result"]
)
CONCURRENCY_CHANGES = Counter(
    "hookline_concurrency_changes_total",
    "Changes of endpoints' learnt concurrency (adaptive control), by change.",
    ["change"],
)
REPLAY_PACED = Counter(
    "hookline_replay_paced_total",
    "Deliveries the replay lanes queued (replays, backfills, resumes).",
)
FLOW_RELEASED = Counter(
    "hookline_flow_released_total",
    "Throttled deliveries released to be sent, by who released.",
    ["by"],
)
FLOW_SLOTS_MISSED = Counter(
    "hookline_flow_slots_missed_total",
    "Deliveries a worker reached after their slot: given back unsent, for a new one; by whose"
    " slot it was (flow: the endpoint's rate, replay: its replay lane's).",
    ["by"],
)
# Most endpoints `hookline_endpoint_concurrency_limit` shows (the most limited first).
FLOW_GAUGE_ENDPOINTS = 100
TEST_ATTEMPTS = Counter(
    "hookline_test_attempts_total",
    "Attempts of test events (POST /v1/endpoints/{id}/test), by result; in no other metric.",
    ["result", "status_class"],
)
OUTCOMES_DROPPED = Counter(
    "hookline_outcomes_dropped_total",
    "Attempt outcomes dropped before reaching the supervisor (the broker was down too long).",
)


class SchedulerFigures(Collector):
    """The gauges only the scheduler can tell, exported by the scheduler's process alone.

    Gauges made when this module is imported would be exported by every process that imports
    it, the workers' and the supervisor's as zeros, misleading whoever reads one target. This
    collector is registered by the scheduler (`register_scheduler_figures`) and shows each
    figure once the scheduler has measured it: the leader flag at once, the backlog counts and
    the breakers after the first pass that leads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leader = 0
        self._backlog: dict[str, int] | None = None
        self._breakers: dict[str, int] | None = None
        self._limits: list[tuple[str, int]] = []

    def lead(self, leading: bool) -> None:
        with self._lock:
            self._leader = 1 if leading else 0

    def backlog(self, counts: Mapping[str, int], limits: Sequence[tuple[str, int]]) -> None:
        """The deliveries by state (`schedule.backlog_counts`) and the learnt concurrency limits."""
        with self._lock:
            self._backlog = dict(counts)
            self._limits = list(limits)

    def breakers(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self._breakers = dict(counts)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            leader, backlog, breakers = self._leader, self._backlog, self._breakers
            limits = list(self._limits)
        yield GaugeMetricFamily("hookline_scheduler_leader", "1 on the active scheduler.", leader)
        if backlog is not None:
            for name, help_text, key in _BACKLOG_GAUGES:
                yield GaugeMetricFamily(name, help_text, backlog.get(key, 0))
            family = GaugeMetricFamily(
                "hookline_endpoint_concurrency_limit",
                "The concurrency adaptive control allows an endpoint now; only those it limits.",
                labels=["endpoint_id"],
            )
            for endpoint_id, concurrency in limits:
                family.add_metric([endpoint_id], concurrency)
            yield family
        if breakers is not None:
            family = GaugeMetricFamily(
                "hookline_breakers", "Endpoints by breaker state.", labels=["state"]
            )
            for state, count in sorted(breakers.items()):
                family.add_metric([state], count)
            yield family


_BACKLOG_GAUGES = (
    ("hookline_scheduled_backlog", "Deliveries waiting for a retry.", "scheduled"),
    ("hookline_due_backlog", "Scheduled deliveries already due.", "due"),
    ("hookline_quarantine_size", "Quarantined deliveries.", "quarantined"),
    (
        "hookline_throttled_deliveries",
        "Deliveries waiting for their endpoints' flow control.",
        "throttled",
    ),
)
SCHEDULER = SchedulerFigures()
_scheduler_registered: list[bool] = []


def register_scheduler_figures() -> SchedulerFigures:
    """Export `SCHEDULER` from this process (the scheduler's, or `hookline up`'s); once."""
    if not _scheduler_registered:
        REGISTRY.register(SCHEDULER)
        _scheduler_registered.append(True)
    return SCHEDULER


_OUTCOMES = {"succeed": "succeeded", "retry": "retried", "quarantine": "quarantined"}


def attempt_labels(outcome: Outcome) -> tuple[str, str]:
    """The bounded `result` and `status_class` labels of one attempt.

    `result` uses the words of the attempt's `error_class` in the API and the logs
    (`http_status`, `timeout`, ...), so one failure is named the same everywhere.
    """
    code = outcome.status_code
    status_class = f"{min(max(code // 100, 1), 5)}xx" if code is not None else "none"
    if outcome.success:
        return "success", status_class
    return outcome.error_class or "connection", status_class


# The labelled series of the per-attempt counters, looked up once: `labels()` takes a lock
# and builds a key for every call, for a handful of distinct values.
_attempts_by_result = functools.lru_cache(maxsize=64)(ATTEMPTS.labels)
_deliveries_by_outcome = functools.lru_cache(maxsize=8)(DELIVERIES.labels)


def observe_attempt(outcome: Outcome, decision: Decision, lag_s: float | None) -> None:
    """Count one recorded attempt and what it decided."""
    _attempts_by_result(*attempt_labels(outcome)).inc()
    ATTEMPT_DURATION.observe(outcome.duration_ms / 1000.0)
    _deliveries_by_outcome(_OUTCOMES.get(decision.action, "quarantined")).inc()
    if lag_s is not None:
        LAG.observe(max(lag_s, 0.0))


def observe_test_attempt(outcome: Outcome) -> None:
    """Count one recorded attempt of a test event, apart from real traffic."""
    TEST_ATTEMPTS.labels(*attempt_labels(outcome)).inc()


def exposition() -> bytes:
    """The metrics of every process writing to the multiprocess directory, or of this one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess_collector.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = exposition()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _server(bind: str) -> ThreadingHTTPServer:
    host, _, port = bind.rpartition(":")
    return ThreadingHTTPServer((host.strip("[]"), int(port)), _Handler)


def serve(bind: str) -> ThreadingHTTPServer:
    """Serve `/metrics` on `host:port` from a daemon thread; answer the server."""
    server = _server(bind)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def serve_worker_metrics() -> int:
    """A dramatiq fork (`--fork actors.metrics:serve_worker_metrics`) serving every worker."""
    settings = Settings.from_env()
    return _serve_forked(settings, settings.worker_metrics_bind, "HOOKLINE_WORKER_METRICS_BIND")


def serve_supervisor_metrics() -> int:
    """A dramatiq fork serving the metrics of `hookline supervisor` (alerts sent)."""
    settings = Settings.from_env()
    return _serve_forked(
        settings, settings.supervisor_metrics_bind, "HOOKLINE_SUPERVISOR_METRICS_BIND"
    )


def _serve_forked(settings: Settings, bind: str, setting: str) -> int:
    # Its lines are JSON like its siblings' (a repeated stop signal is logged here too).
    logs.configure(settings.log_level, settings.log_format)
    absorb_repeated_stops()  # dramatiq's fork handlers are installed by now
    try:
        _server(bind).serve_forever()
    except OSError as exc:
        log.error("metrics_cannot_listen", setting=setting, bind=bind, error=str(exc))
        return 1
    except KeyboardInterrupt:
        pass
    return 0
