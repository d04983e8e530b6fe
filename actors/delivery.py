"""The delivery actors: `fan_out(event_id)` and `deliver(delivery_id)`.

Thin shells: claim, call the engine, record, return. The database work runs
in the worker thread; the HTTP attempt runs on the process's event loop.
"""

from __future__ import annotations

import time

import structlog
from dramatiq.asyncio import async_to_sync

from actors import metrics, runtime
from actors.supervision import outcome_row
from engine import deliveries
from engine.delivery import Outcome
from engine.errors import CryptoError
from engine.models import utcnow

log = structlog.get_logger("hookline.delivery")


def fan_out(event_id: str) -> None:
    """Create the event's deliveries and publish each one."""
    rt = runtime.current()
    with rt.database.connection_context():
        delivery_ids = deliveries.fan_out(event_id, lease_s=rt.settings.fan_out_lease_s)
    if not delivery_ids:
        return
    published = rt.publisher.enqueue_many("deliver", delivery_ids)
    with rt.database.connection_context():
        deliveries.mark_queued(delivery_ids[:published], lease_s=rt.settings.queue_lease_s)
    log.info(
        "event_fanned_out", event_id=event_id, deliveries=len(delivery_ids), published=published
    )


def deliver(delivery_id: str) -> None:
    """Make one attempt of a delivery and record what happened."""
    rt = runtime.current()
    settings = rt.settings
    with rt.database.connection_context():
        claimed = deliveries.claim(
            delivery_id, lease_s=settings.request_timeout_s + settings.lease_grace_s
        )
    if claimed is None:
        return
    assert rt.client is not None, "the HttpClient middleware opens the client at boot"
    try:
        request = deliveries.build_request(
            claimed, user_agent=runtime.USER_AGENT, timestamp=int(time.time()), box=rt.box
        )
    except CryptoError as exc:  # a key is missing: an attempt that failed, retried later
        outcome = Outcome(utcnow(), 0.0, error_class="secret_unavailable", error_detail=str(exc))
    else:
        outcome = async_to_sync(rt.client.send)(request)
    with rt.database.connection_context():
        decision = deliveries.record(
            claimed, outcome, schedule=settings.retry_schedule_s, max_age_s=settings.max_age_s
        )
    # A secret that does not decrypt is our fault, not the endpoint's: the breaker ignores it.
    if rt.outcomes is not None and outcome.error_class != "secret_unavailable":
        rt.outcomes.report(outcome_row(claimed.endpoint.id, delivery_id, outcome, decision))
    first = claimed.delivery.attempts == 1
    lag_s = (outcome.started_at - claimed.event.created_at).total_seconds() if first else None
    metrics.observe_attempt(outcome, decision, lag_s)
    log.info(
        "delivery_attempted",
        delivery_id=delivery_id,
        event_id=claimed.event.id,
        endpoint_id=claimed.endpoint.id,
        attempt=claimed.delivery.attempts,
        status_code=outcome.status_code,
        error_class=outcome.error_class,
        duration_ms=round(outcome.duration_ms, 1),
        decision=decision.action,
        delay_s=decision.delay_s,
    )
