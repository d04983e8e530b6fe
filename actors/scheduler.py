"""The scheduler: publishes what is due, and finds again whatever was lost.

Exactly one is active: it holds a PostgreSQL advisory lock on its own
connection, and a standby polls for the lock and takes over within a pass or
two if the leader dies. Rows are taken with `FOR UPDATE SKIP LOCKED`, so even
two active schedulers would never publish the same row twice in one pass.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from actors import flow, metrics, pacing, registry
from actors.breaker_tick import Tick
from actors.broker import Publisher
from actors.middleware import Quarantine
from actors.retention_pass import RetentionPass
from engine.db.connect import UNAVAILABLE_ERRORS, bind
from engine.deliveries import flow as flow_state
from engine.deliveries import flow_view, quarantine
from engine.deliveries import lost as lost_attempts
from engine.deliveries import schedule as scheduling
from engine.lifecycle import erase
from engine.lifecycle import tenants as lifecycle
from engine.settings import Settings

log = structlog.get_logger("hookline.scheduler")

# Seconds between the backlog counts behind the gauges (each is a COUNT query).
GAUGE_INTERVAL_S = 5.0


class Scheduler:
    """One scheduler loop; `run` until `stop` is set."""

    def __init__(self, settings: Settings, database: Any, publisher: Publisher) -> None:
        self.settings = settings
        self.database = database
        self.publisher = publisher
        self.leading = False
        self.stop = threading.Event()
        self._gauges_due_at = 0.0
        self.figures = metrics.register_scheduler_figures()
        self.tick = Tick(settings, publisher, self.figures)
        self.retention = RetentionPass(settings, database)

    def run(self) -> None:
        """Pass after pass until stopped; database outages are waited out.

        Flow control's releases and the replay lanes' paces run beside the passes, on a
        thread and connection of their own (`_flow_clock`): a pass can take seconds (a
        retention batch, the gauges' counts, a slow database), and a rate released
        only between passes fell to half of itself on a loaded machine.
        """
        interval = self.settings.scheduler_interval_s
        log.info("scheduler_started", interval_s=interval)
        clock = threading.Thread(target=self._flow_clock, name="flow-clock", daemon=True)
        clock.start()
        while not self.stop.is_set():
            busy = self._guarded(self.run_once, "scheduler_pass_failed")
            self.stop.wait(0.0 if busy else interval)
        clock.join(timeout=10)
        self._resign()
        log.info("scheduler_stopped")

    def _flow_clock(self) -> None:
        """While leading: every `flow_interval_s` the flow pass releases deliveries waiting
        for their endpoints' flow control (`release_once`), and the replay lanes queue what
        their rates allow (`pace_once`), twice as often while they have work; each counted
        from the start of the last, so that one slowed by a busy database or its publishing
        costs the next as little of its bucket as it can.

        The lead stays the passes' (their connection holds the lock): this thread only
        follows it, and a failure here costs it nothing but a wait. Two leaders for a
        moment (a failover) are safe: every release and pace locks the rows it pays from.
        """
        every = self.settings.flow_interval_s
        flow_next = pace_next = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() >= flow_next:
                    started = time.monotonic()
                    self._clocked(self.release_once, "flow_release_failed")
                    flow_next = started + every
                if time.monotonic() >= pace_next:
                    started = time.monotonic()
                    paced = self._clocked(self.pace_once, "replay_pace_failed")
                    pace_next = started + every / (2 if paced else 1)
                self.stop.wait(max(0.0, min(flow_next, pace_next) - time.monotonic()))
        finally:
            _drop_connection(self.database)  # this thread's own

    def _clocked(self, step: Any, failure: str) -> int:
        """Run one of the clock's steps; a failure is logged and waited out, the lead kept."""
        try:
            return int(step())
        except UNAVAILABLE_ERRORS as exc:
            log.warning(failure, error=str(exc)[:200])
        except Exception:
            log.exception(failure)
        _drop_connection(self.database)
        self.stop.wait(self.settings.scheduler_interval_s)
        return 0

    def _guarded(self, step: Any, failure: str) -> bool:
        """Run one step; a database outage or a failure drops the lead and answers False."""
        try:
            return bool(step())
        except UNAVAILABLE_ERRORS as exc:
            self._lose_connection(exc)
        except Exception:
            log.exception(failure)
            self._lose_connection(None)
        return False

    def release_once(self) -> int:
        """Release what the endpoints' flow control allows now; answer how many were published."""
        if not self.leading:
            return 0
        return flow.release(self.settings, self.publisher, None, by="scheduler")

    def pace_once(self) -> int:
        """Queue what the replay lanes let go now; answer how many were published."""
        if not self.leading:
            return 0
        return pacing.pace(self.settings, self.publisher)

    def run_once(self) -> bool:
        """One pass; True when a batch was full and another pass should follow at once."""
        if not self.leading:
            self.database.connect(reuse_if_open=True)
            self.leading = scheduling.try_lead(self.database)
            self.figures.lead(self.leading)
            if not self.leading:
                return False
            log.info("scheduler_leading")
        batch, lease = self.settings.scheduler_batch, self.settings.queue_lease_s
        due = scheduling.take_due(batch=batch, lease_s=lease)
        poisoned = lost_attempts.quarantine_lost(limit=self.settings.max_lost_attempts, batch=batch)
        if poisoned:
            log.warning("deliveries_quarantined_lost", deliveries=poisoned)
        lost = scheduling.take_expired(batch=batch, lease_s=lease)
        unfanned = scheduling.take_unfanned(batch=batch, lease_s=self.settings.fan_out_lease_s)
        orphans = flow_state.mark_orphans()  # the next flow pass releases them
        if orphans:
            log.info("flow_waiting_marked", endpoints=len(orphans))
        pacing.sweep(self.settings)  # the next pace opens what it finds
        self._publish("deliver", due, "due")
        self._publish("deliver", lost, "recovered")
        self._publish("fan_out", unfanned, "fan_out")
        self._update_gauges()
        if lost or unfanned:
            log.info("scheduler_recovered", deliveries=len(lost), events=len(unfanned))
        copied = self._copy_quarantined(batch)
        ticked = self._tick()
        erasing = self._lifecycle()
        retaining = self.retention.run()
        return (
            ticked
            or erasing
            or retaining
            or max(len(due), len(poisoned), len(lost), len(unfanned), copied) >= batch
        )

    def _lifecycle(self) -> bool:
        """Suspended tenants' endpoints held, deleted tenants erased a little; True: more to erase.

        Its failure never costs the scheduler its lead.
        """
        try:
            held = lifecycle.hold_stragglers()
            if held:
                log.info("tenant_endpoints_held", endpoints=held)
            return erase.erase_some()
        except UNAVAILABLE_ERRORS:
            raise
        except Exception:
            log.exception("tenant_lifecycle_failed")
            return False

    def _tick(self) -> bool:
        """The breakers' time-driven work; its failure never costs the scheduler its lead."""
        try:
            return self.tick.run()
        except UNAVAILABLE_ERRORS:
            raise
        except Exception:
            log.exception("supervision_tick_failed")
            return False

    def _update_gauges(self) -> None:
        if time.monotonic() < self._gauges_due_at:
            return
        self._gauges_due_at = time.monotonic() + GAUGE_INTERVAL_S
        counts = scheduling.backlog_counts()
        self.figures.backlog(counts, flow_view.limited(metrics.FLOW_GAUGE_ENDPOINTS))

    def _copy_quarantined(self, batch: int) -> int:
        rows = quarantine.take_unpublished(batch)
        if not rows:
            return 0
        confirmed = self.publisher.publish_quarantine([quarantine.copy_document(r) for r in rows])
        quarantine.mark_published([row.id for row in rows[:confirmed]])
        if confirmed < len(rows):
            log.warning("quarantine_copy_failed", unpublished=len(rows) - confirmed)
        return confirmed

    def _publish(self, kind: str, idents: list[str], label: str) -> None:
        if not idents:
            return
        published = self.publisher.enqueue_many(kind, idents)
        metrics.SCHEDULER_PUBLISHED.labels(label).inc(published)
        if published < len(idents):
            log.warning("scheduler_publish_failed", kind=kind, unpublished=len(idents) - published)

    def _lose_connection(self, exc: BaseException | None) -> None:
        if self.leading:
            log.warning("scheduler_lost_database", error=str(exc)[:200] if exc else None)
        self.leading = False
        self.figures.lead(False)
        _drop_connection(self.database)

    def _resign(self) -> None:
        if not self.leading:
            return
        try:
            scheduling.resign(self.database)
        except Exception:  # noqa: BLE001 - closing drops the lock anyway
            pass
        _drop_connection(self.database)
        self.leading = False


def _drop_connection(database: Any) -> None:
    """Close the connection for good: a pooled one would keep the session's lock."""
    try:
        if database.is_closed():
            return
        if hasattr(database, "manual_close"):
            database.manual_close()
        else:
            database.close()
    except Exception:  # noqa: BLE001 - the connection is already gone
        pass


def build(settings: Settings) -> Scheduler:
    """The scheduler process's composition root: its database, a publish-only broker, the loop.

    The broker carries the `Quarantine` middleware: the queue the scheduler
    copies quarantined deliveries to.
    """
    publisher = registry.publisher(settings, middleware=[Quarantine()])
    return Scheduler(settings, bind(settings), publisher)
