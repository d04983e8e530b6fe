"""Rows made as if days ago, for the retention tests (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from engine.db.models import Attempt, Delivery, Event, EventFanOut, EventKey, db, utcnow
from engine.ids import new_id


def aged_event(
    endpoint: Any,
    age_days: float,
    *,
    status: str = "succeeded",
    key: str | None = None,
    fanned_out: bool = True,
    attempts: int = 1,
) -> str:
    """An event `age_days` old with one delivery in `status` and its attempts; answer its id."""
    ms = int(time.time() * 1000 - age_days * 86_400_000)
    at = utcnow() - dt.timedelta(days=age_days)
    event_id = new_id("evt", now_ms=ms)
    delivery_id = new_id("dlv", now_ms=ms)
    with db.atomic():
        Event.insert(
            id=event_id,
            tenant_id=endpoint.tenant_id,
            event_type="order.paid",
            payload="{}",
            idempotency_key=key,
            created_at=at,
        ).execute()
        if key is not None:
            EventKey.insert(
                tenant_id=endpoint.tenant_id, idempotency_key=key, event_id=event_id, created_at=at
            ).execute()
        if fanned_out:
            EventFanOut.delete().where(EventFanOut.event_id == event_id).execute()
        Delivery.insert(
            id=delivery_id,
            tenant_id=endpoint.tenant_id,
            event_id=event_id,
            endpoint_id=endpoint.id,
            event_type="order.paid",
            status=status,
            attempts=attempts,
            event_created_at=at,
            created_at=at,
            updated_at=at,
        ).execute()
        for number in range(1, attempts + 1):
            Attempt.insert(
                id=new_id("att"),
                tenant_id=endpoint.tenant_id,
                delivery_id=delivery_id,
                number=number,
                started_at=at,
                duration_ms=1.0,
                outcome="success",
            ).execute()
    return event_id


def stored(event_id: str) -> tuple[int, int, int]:
    """How many rows of the event remain: (event, deliveries, attempts)."""
    deliveries = [d.id for d in Delivery.select(Delivery.id).where(Delivery.event_id == event_id)]
    attempts = (
        Attempt.select().where(Attempt.delivery_id.in_(deliveries)).count() if deliveries else 0
    )
    return Event.select().where(Event.id == event_id).count(), len(deliveries), attempts
