"""Quarantine: deliveries that will not be attempted again on their own, and
the way back for one: retry it now. Many at once go back by a replay
(`engine.replays`; `recover` is one).

The `delivery` row is the quarantine of record. A copy of each goes to the
durable RabbitMQ queue `hookline.quarantine` for operators; the scheduler
publishes the copies, so a broker outage only delays them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from engine.db.models import Delivery, db, utcnow
from engine.db.pages import Page, paginate
from engine.deliveries import states
from engine.deliveries.states import QUARANTINED, QUEUED, SCHEDULED
from engine.errors import ConflictError

RETRYABLE = (QUARANTINED, SCHEDULED)

_REOPEN: dict[str, Any] = {
    "quarantine_reason": None,
    "quarantined_at": None,
    "quarantine_published_at": None,
}


def list_quarantine(
    tenant_id: str,
    *,
    limit: int,
    cursor: str | None,
    endpoint_id: str | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page:
    """The tenant's quarantined deliveries, newest first, filtered by quarantine time."""
    query = Delivery.select().where(
        (Delivery.tenant_id == tenant_id) & (Delivery.status == QUARANTINED)
    )
    if endpoint_id:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    if event_type:
        query = query.where(Delivery.event_type == event_type)
    if since:
        query = query.where(Delivery.quarantined_at >= since)
    if until:
        query = query.where(Delivery.quarantined_at < until)
    return paginate(query, Delivery.id, limit=limit, cursor=cursor)


def retry_now(delivery: Delivery, *, lease_s: float) -> Delivery:
    """Queue a quarantined or scheduled delivery for an attempt now.

    The caller publishes it; if that fails, the lease runs out and the
    scheduler publishes it instead.

    Raises:
        ConflictError: the delivery is neither quarantined nor scheduled.
    """
    now = utcnow()
    with db.atomic():
        moved = states.move(
            Delivery.id == delivery.id,
            to=QUEUED,
            from_=RETRYABLE,
            **_REOPEN,
            next_attempt_at=None,
            lease_until=now + dt.timedelta(seconds=lease_s),
            updated_at=now,
        )
        if not moved:
            raise ConflictError(
                f"delivery {delivery.id} is {delivery.status}; only quarantined or scheduled "
                "deliveries can be retried"
            )
        return Delivery.get(Delivery.id == delivery.id)


def take_unpublished(batch: int) -> list[Delivery]:
    """Quarantined deliveries whose copy has not reached the quarantine queue yet."""
    return list(
        Delivery.select()
        .where((Delivery.status == QUARANTINED) & Delivery.quarantine_published_at.is_null())
        .order_by(Delivery.quarantined_at)
        .limit(batch)
    )


def mark_published(delivery_ids: Sequence[str]) -> None:
    """Record that these copies are in the quarantine queue."""
    if delivery_ids:
        Delivery.update(quarantine_published_at=utcnow()).where(
            Delivery.id.in_(list(delivery_ids)) & (Delivery.status == QUARANTINED)
        ).execute()


def copy_document(delivery: Delivery) -> bytes:
    """The JSON message operators see in `hookline.quarantine` (ids, reason, last answer)."""

    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat(timespec="milliseconds") + "Z" if value else None

    return json.dumps(
        {
            "delivery_id": delivery.id,
            "tenant_id": delivery.tenant_id,
            "event_id": delivery.event_id,
            "endpoint_id": delivery.endpoint_id,
            "event_type": delivery.event_type,
            "reason": delivery.quarantine_reason,
            "attempts": delivery.attempts,
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "quarantined_at": stamp(delivery.quarantined_at),
            "event_created_at": stamp(delivery.event_created_at),
        },
        separators=(",", ":"),
    ).encode()
