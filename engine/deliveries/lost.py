"""Poison deliveries: those whose attempts keep dying with their worker, quarantined.

A worker that dies mid-attempt (killed, out of memory, a crash in a C library) leaves
its delivery `delivering` until the claim's lease runs out; RabbitMQ gives its message
to another worker, whose claim finds the lease still running and lets it go, and the
scheduler's `schedule.take_expired` publishes the delivery again once the lease ran out.
A delivery that kills every worker that tries it would go round that loop forever, one
dead worker per lease: RabbitMQ's delivery limit (quorum queues) cannot see it, since
each pass is a new message.

Each claim adds one to `delivery.attempts`; each outcome recorded writes one attempt
row, numbered by it. Their difference is how many claims died without an outcome. The
scheduler runs `quarantine_lost` before `take_expired`, in the same pass: a delivery
with `HOOKLINE_MAX_LOST_ATTEMPTS` such claims is quarantined, reason `lost_attempts`,
where an operator sees it and may retry it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import fn

from engine.db.connect import is_postgres
from engine.db.models import Attempt, Delivery, db, utcnow
from engine.deliveries import states
from engine.deliveries.states import DELIVERING, QUARANTINED

REASON = "lost_attempts"


def lost_attempts() -> Any:
    """The SQL expression: a delivery's claims that ended without an attempt recorded."""
    recorded = Attempt.select(fn.COUNT(Attempt.id)).where(Attempt.delivery_id == Delivery.id)
    return Delivery.attempts - recorded


def quarantine_lost(*, limit: int, batch: int, now: dt.datetime | None = None) -> list[str]:
    """Quarantine up to `batch` deliveries whose lease ran out with `limit` claims lost.

    Answers their ids. Only a delivery still `delivering` with its lease run out is
    looked at: one whose worker is alive records its attempt first.
    """
    now = now or utcnow()
    picked = (
        Delivery.select(Delivery.id)
        .where(
            (Delivery.status == DELIVERING)
            & (Delivery.lease_until < now)
            & (lost_attempts() >= limit)
        )
        .order_by(Delivery.lease_until)
        .limit(batch)
    )
    if is_postgres(db.obj):
        picked = picked.for_update(skip_locked=True)
    # One statement: unlike the scheduler's takes (schedule._take), the subquery beside
    # `status IN (...)` only ever meets the few deliveries in flight.
    taken = (
        states.update(
            Delivery.id.in_(picked) & (Delivery.lease_until < now),
            to=QUARANTINED,
            from_=(DELIVERING,),
            lease_until=None,
            next_attempt_at=None,
            quarantine_reason=REASON,
            quarantined_at=now,
            last_error=f"{limit} attempts ended without an outcome: the worker died or"
            " lost its claim each time",
            updated_at=now,
        )
        .returning(Delivery.id)
        .execute()
    )
    return [row.id for row in taken]
