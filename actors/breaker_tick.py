"""The breakers' time-driven work, which the active scheduler runs on every pass."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from actors import metrics
from actors.broker import Publisher
from engine.alerts import outbox as alert_records
from engine.breakers import tick as supervision
from engine.breakers.state import Policy
from engine.db.models import utcnow
from engine.settings import Settings

log = structlog.get_logger("hookline.supervision")

PROBE_MARGIN_S = 10.0  # a probe's outcome may take this long to reach the supervisor
SWEEP_INTERVAL_S = 30.0
PRUNE_INTERVAL_S = 60.0
GAUGE_INTERVAL_S = 5.0


class Tick:
    """The breakers' time-driven work; cheap when nothing is due."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        figures: metrics.SchedulerFigures = metrics.SCHEDULER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.figures = figures
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
            self.figures.breakers(supervision.breaker_counts())
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
