"""The scheduler's queries: what is due, what was lost, who leads.

Each `take_*` moves rows to `queued` with a fresh lease in one short
transaction and answers their ids; the caller publishes them after commit.
If the publish fails the lease runs out and a later pass takes them again,
so a broker outage delays work but never drops it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.db.connect import is_postgres
from engine.db.models import Delivery, EventFanOut, db, utcnow
from engine.deliveries import states
from engine.deliveries.states import (
    DELIVERING,
    PENDING,
    QUARANTINED,
    QUEUED,
    SCHEDULED,
    THROTTLED,
)

LEADER_LOCK_KEY = 0x486F6F6C  # advisory lock the active scheduler holds
_LEASED = (PENDING, QUEUED, DELIVERING)  # what a lease that ran out leaves lost


def _take(
    condition: Any, order: Any, *, from_: tuple[str, ...], batch: int, lease_s: float
) -> list[str]:
    """Move up to `batch` matching rows to `queued` with a fresh lease; answer their ids.

    The rows are picked (and locked, on PostgreSQL) first, then moved by id: with the
    state machine's `status IN (...)` beside a subquery, PostgreSQL's planner scanned
    every row in that status instead of the few picked (ops/bench/NOTES.md#scheduler-takes).
    """
    now = utcnow()
    picked = Delivery.select(Delivery.id).where(condition(now)).order_by(order).limit(batch)
    if is_postgres(db.obj):
        picked = picked.for_update(skip_locked=True)
    with db.atomic():
        ids = [row.id for row in picked]
        if not ids:
            return []
        taken: Any = (
            states.update(
                Delivery.id.in_(ids),
                to=QUEUED,
                from_=from_,
                lease_until=now + dt.timedelta(seconds=lease_s),
                updated_at=now,
            )
            .returning(Delivery.id)
            .execute()
        )
        return [row.id for row in taken]


def take_due(*, batch: int, lease_s: float) -> list[str]:
    """Scheduled deliveries whose time has come, earliest first."""
    return _take(
        lambda now: (Delivery.status == SCHEDULED) & (Delivery.next_attempt_at <= now),
        Delivery.next_attempt_at,
        from_=(SCHEDULED,),
        batch=batch,
        lease_s=lease_s,
    )


def take_expired(*, batch: int, lease_s: float) -> list[str]:
    """Deliveries never published, published but never claimed, or claimed by a dead worker."""
    return _take(
        lambda now: Delivery.status.in_(_LEASED) & (Delivery.lease_until < now),
        Delivery.lease_until,
        from_=_LEASED,
        batch=batch,
        lease_s=lease_s,
    )


def take_unfanned(*, batch: int, lease_s: float) -> list[str]:
    """Events whose fan-out was never confirmed done, with their lease renewed."""
    now = utcnow()
    with db.atomic():
        picked = (
            EventFanOut.select(EventFanOut.event_id)
            .where(EventFanOut.lease_until < now)
            .order_by(EventFanOut.lease_until)
            .limit(batch)
        )
        if is_postgres(db.obj):
            picked = picked.for_update(skip_locked=True)
        ids = [row.event_id for row in picked]
        if ids:
            EventFanOut.update(lease_until=now + dt.timedelta(seconds=lease_s)).where(
                EventFanOut.event_id.in_(ids)
            ).execute()
    return ids


def expire_leases(*, now: dt.datetime | None = None) -> tuple[int, int]:
    """End every lease now: (deliveries, events awaiting fan-out) whose lease was running.

    For a process whose broker was in memory and died with it (`hookline up`): the
    messages those leases waited on are gone, so the next scheduler pass takes the work
    again at once instead of after the lease. Never call it where another live process
    may hold a lease: its work would be taken twice.
    """
    now = now or utcnow()
    past = now - dt.timedelta(microseconds=1)
    with db.atomic():
        deliveries = (
            Delivery.update(lease_until=past)
            .where(Delivery.status.in_(_LEASED) & (Delivery.lease_until >= now))
            .execute()
        )
        events = (
            EventFanOut.update(lease_until=past).where(EventFanOut.lease_until >= now).execute()
        )
    return int(deliveries), int(events)


def backlog_counts() -> dict[str, int]:
    """Deliveries waiting for a retry, those already due, those quarantined, and those
    waiting for their endpoint's flow control."""
    now = utcnow()
    scheduled = Delivery.select().where(Delivery.status == SCHEDULED)
    return {
        "scheduled": scheduled.count(),
        "due": scheduled.where(Delivery.next_attempt_at <= now).count(),
        "quarantined": Delivery.select().where(Delivery.status == QUARANTINED).count(),
        "throttled": Delivery.select().where(Delivery.status == THROTTLED).count(),
    }


def try_lead(database: Any) -> bool:
    """Take the scheduler's leadership on this thread's connection, if free.

    On SQLite there is one process, so it always leads. On PostgreSQL the lock
    lives as long as the connection: keep it open while leading.
    """
    if not is_postgres(database):
        return True
    row = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
    return bool(row[0])


def resign(database: Any) -> None:
    """Give up leadership (the lock is also dropped when the connection closes)."""
    if is_postgres(database):
        database.execute_sql("SELECT pg_advisory_unlock_all()")
