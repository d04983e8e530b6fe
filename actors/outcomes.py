"""Attempt outcomes on their way to the supervisor, batched by one background thread.

Each worker process hands attempt outcomes to one `OutcomeReporter`: a
background thread that publishes `supervise(outcomes)` every 0.5 s or 500
outcomes, on its own AMQP connection (a publishing thread has its own), so a
deliver thread never waits on the broker. While the broker is down it keeps
at most `capacity` outcomes and drops the oldest, counted. `report_attempt`
is what the pipeline calls for every recorded attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import structlog

from actors import metrics
from actors.messages import OutcomeRecord
from engine.deliveries import slots
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision

log = structlog.get_logger("hookline.supervision")
attempt_log = structlog.get_logger("hookline.delivery")
_stdlib_log = logging.getLogger("hookline.delivery")

MAX_BATCH = 500
FLUSH_INTERVAL_S = 0.5
CAPACITY = 100_000  # outcomes a process keeps while the broker is down
MAX_BACKOFF_S = 30.0
# Attempts that failed before reaching the endpoint, which say nothing of its health.
NOT_THE_ENDPOINTS = frozenset({"secret_unavailable", "transform_error"})


class OutcomeReporter:
    """Batches a process's outcomes for the supervisor on one background thread."""

    def __init__(
        self,
        publish: Callable[[list[OutcomeRecord]], None],
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
        self._buffer: deque[OutcomeRecord] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped_logged_at = 0.0

    def report(self, outcome: OutcomeRecord) -> None:
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

    def _put_back(self, batch: list[OutcomeRecord]) -> None:
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


def report_attempt(
    reporter: OutcomeReporter | None, claimed: Claim, outcome: Outcome, decision: Decision
) -> None:
    """Report a recorded attempt: to the supervisor, to the metrics, to the log.

    A test event's attempt (`engine.deliveries.test_events`) is logged, and counted
    apart; the breaker and the metrics of real traffic never see it.
    """
    if outcome.error_class == slots.MISSED:  # no attempt: given back to its flow, unsent
        return
    test = claimed.delivery.test
    # A secret that does not decrypt is our fault, and a transform that fails is the
    # subscriber's configuration, not the endpoint's availability: the breaker ignores both.
    if reporter is not None and outcome.error_class not in NOT_THE_ENDPOINTS and not test:
        reporter.report(
            OutcomeRecord.of(claimed.endpoint.id, claimed.delivery.id, outcome, decision)
        )
    if test:
        metrics.observe_test_attempt(outcome)
    else:
        first = claimed.delivery.attempts == 1
        lag_s = (outcome.started_at - claimed.event.created_at).total_seconds() if first else None
        metrics.observe_attempt(outcome, decision, lag_s)
    # Every attempt is in the attempt log (`GET /v1/deliveries/{id}/attempts`); the process
    # log carries the failures, and the successes only at debug, checked before the event is
    # built (ops/bench/NOTES.md#successful-attempts-logged-at-debug).
    if outcome.success and not _stdlib_log.isEnabledFor(logging.DEBUG):
        return
    (attempt_log.debug if outcome.success else attempt_log.info)(
        "delivery_attempted",
        test=test,
        delivery_id=claimed.delivery.id,
        event_id=claimed.event.id,
        endpoint_id=claimed.endpoint.id,
        attempt=claimed.delivery.attempts,
        status_code=outcome.status_code,
        error_class=outcome.error_class,
        duration_ms=round(outcome.duration_ms, 1),
        decision=decision.action,
        delay_s=decision.delay_s,
    )
