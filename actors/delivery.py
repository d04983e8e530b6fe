"""The delivery actors: `fan_out(event_id)` and `deliver(delivery_id)`.

Thin shells: claim, call the engine, record, return. The database work runs
in the worker thread; the HTTP attempt runs on the process's event loop.
"""

from __future__ import annotations

import time

import structlog
from dramatiq.asyncio import async_to_sync

from actors import runtime
from engine import deliveries

log = structlog.get_logger("hookline.delivery")


def fan_out(event_id: str) -> None:
    """Create the event's deliveries and publish each one."""
    rt = runtime.current()
    with rt.database.connection_context():
        delivery_ids = deliveries.fan_out(event_id)
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
    request = deliveries.build_request(
        claimed, user_agent=runtime.USER_AGENT, timestamp=int(time.time())
    )
    outcome = async_to_sync(rt.client.send)(request)
    with rt.database.connection_context():
        decision = deliveries.record(
            claimed, outcome, schedule=settings.retry_schedule_s, max_age_s=settings.max_age_s
        )
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
