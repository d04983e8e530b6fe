"""Outcomes to the supervisor in batches, the `supervise` actor, and the breakers' tick.

Each worker process hands attempt outcomes to one `OutcomeReporter`: a
background thread that publishes `supervise(outcomes)` every 0.5 s or 500
outcomes, on its own AMQP connection (a publishing thread has its own), so a
deliver thread never waits on the broker. While the broker is down it keeps
at most `capacity` outcomes and drops the oldest, counted. `supervise` runs in
`hookline supervisor` alone and folds each batch into PostgreSQL. `Tick` is
the time-driven part, which the active scheduler runs on every pass.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from actors import metrics, runtime
from actors.broker import Publisher
from engine.alerts import outbox as alert_records
from engine.breakers import store as health
from engine.breakers import tick as supervision
from engine.breakers.state import Policy
from engine.db.models import utcnow
from engine.deliveries.client import Outcome
from engine.retry import Decision
from engine.settings import Settings

log = structlog.get_logger("hookline.supervision")

MAX_BATCH = 500
FLUSH_INTERVAL_S = 0.5
CAPACITY = 100_000  # outcomes a process keeps while the broker is down
MAX_BACKOFF_S = 30.0
PROBE_MARGIN_S = 10.0  # a probe's outcome may take this long to reach the supervisor
SWEEP_INTERVAL_S = 30.0
PRUNE_INTERVAL_S = 60.0
GAUGE_INTERVAL_S = 5.0
_EPOCH = dt.datetime(1970, 1, 1)


def outcome_row(
    endpoint_id: str, delivery_id: str, outcome: Outcome, decision: Decision
) -> list[Any]:
    """One outcome as the `supervise` message carries it (JSON)."""
    at_s = (outcome.started_at - _EPOCH).total_seconds()
    quarantined = decision.action in ("quarantine", "disable")
    return [endpoint_id, outcome.success, at_s, outcome.status_code, delivery_id, quarantined]


class OutcomeReporter:
    """Batches a process's outcomes for the supervisor on one background thread."""

    def __init__(
        self,
        publish: Callable[[list[list[Any]]], None],
        *,
        max_batch: int = MAX_BATCH,
        interval_s: float = FLUSH_INTERVAL_S,
        capacity: int = CAPACITY,
    ) -> None:
        self.publish = publish
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.capacity = capacity
        self.dropped = 0
        self._buffer: deque[list[Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped_logged_at = 0.0

    def report(self, outcome: list[Any]) -> None:
        """Queue one outcome; never blocks on the broker."""
        with self._lock:
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self._drop(1)
            self._buffer.append(outcome)
            full = len(self._buffer) >= self.max_batch
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="outcomes", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued (unless the broker fails) and stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def pending(self) -> int:
        """Outcomes not yet published."""
        with self._lock:
            return len(self._buffer)

    def _run(self) -> None:
        delay_s, failures = self.interval_s, 0
        while True:
            self._wake.wait(delay_s)
            self._wake.clear()
            with self._lock:
                batch = [
                    self._buffer.popleft() for _ in range(min(self.max_batch, len(self._buffer)))
                ]
            if batch:
                try:
                    self.publish(batch)
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the broker is down: keep, retry later
                    failures += 1
                    self._put_back(batch)
                    if failures == 1:
                        log.warning("outcomes_publish_failed", error=f"{type(exc).__name__}: {exc}")
                    if self._stopping.is_set():
                        log.warning("outcomes_abandoned", outcomes=self.pending())
                        return
                    delay_s = min(MAX_BACKOFF_S, self.interval_s * 2**failures)
                    continue
            if self._stopping.is_set() and not self.pending():
                return
            delay_s = 0.0 if self.pending() >= self.max_batch else self.interval_s

    def _put_back(self, batch: list[list[Any]]) -> None:
        with self._lock:
            self._buffer.extendleft(reversed(batch))
            excess = len(self._buffer) - self.capacity
            for _ in range(max(0, excess)):
                self._buffer.popleft()
            if excess > 0:
                self._drop(excess)

    def _drop(self, count: int) -> None:
        self.dropped += count
        metrics.OUTCOMES_DROPPED.inc(count)
        if time.monotonic() - self._dropped_logged_at > 10.0:
            self._dropped_logged_at = time.monotonic()
            log.warning("outcomes_dropped", dropped=self.dropped, capacity=self.capacity)


class Outcomes(Middleware):
    """Flushes the process's outcome reporter once the worker's threads are done."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        reporter = runtime.current().outcomes
        if reporter is not None:
            reporter.stop()


def supervise(outcomes: list[list[Any]]) -> None:
    """Fold one batch of attempt outcomes into the endpoints' windows and breakers."""
    rt = runtime.current()
    observations = [
        health.Observation(
            endpoint_id=str(row[0]),
            success=bool(row[1]),
            at=_EPOCH + dt.timedelta(seconds=float(row[2])),
            status_code=row[3],
            delivery_id=str(row[4]),
            quarantined=bool(row[5]) if len(row) > 5 else False,
        )
        for row in outcomes
    ]
    with rt.database.connection_context():
        emitted = health.fold(observations, policy=Policy.from_settings(rt.settings))
    log.debug("outcomes_supervised", outcomes=len(observations), alerts=len(emitted))


class Tick:
    """The breakers' time-driven work; cheap when nothing is due."""

    def __init__(
        self, settings: Settings, publisher: Publisher, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.policy = Policy.from_settings(settings)
        self.probe_timeout_s = settings.request_timeout_s + settings.lease_grace_s + PROBE_MARGIN_S
        self.clock = clock
        self._next = {"sweep": 0.0, "prune": 0.0, "gauges": 0.0}

    def run(self) -> bool:
        """One pass; True when a batch was full and another should follow at once."""
        now, batch = utcnow(), self.settings.scheduler_batch
        emitted = supervision.advance(
            self.policy, now=now, probe_timeout_s=self.probe_timeout_s, batch=batch
        )
        released = supervision.release(self.policy, now=now, batch=batch)
        emitted += supervision.digest(
            self.policy, digest_s=self.settings.alert_digest_s, now=now, batch=batch
        )
        if self._every("sweep", SWEEP_INTERVAL_S):
            supervision.sweep_parked(now)
        if self._every("prune", PRUNE_INTERVAL_S):
            supervision.prune(now)
        if self._every("gauges", GAUGE_INTERVAL_S):
            for state, count in supervision.breaker_counts().items():
                metrics.BREAKERS.labels(state).set(count)
        published, taken = alert_records.publish_pending(
            lambda ids: self.publisher.enqueue_many("alert", ids), batch
        )
        if published < taken:
            log.warning("alert_publish_failed", unpublished=taken - published)
        if emitted or released:
            log.info("breakers_ticked", alerts=len(emitted), released=released)
        return taken >= batch

    def _every(self, name: str, interval_s: float) -> bool:
        if self.clock() < self._next[name]:
            return False
        self._next[name] = self.clock() + interval_s
        return True
