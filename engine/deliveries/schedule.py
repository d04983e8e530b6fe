"""The scheduler's queries: what is due, what was lost, who leads.

Each `take_*` moves rows to `queued` with a fresh lease in one short
transaction and answers their ids; the caller publishes them after commit.
If the publish fails the lease runs out and a later pass takes them again,
so a broker outage delays work but never drops it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from peewee import Case

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
        return _queue(ids, from_=from_, now=now, lease_s=lease_s)


def _queue(
    ids: list[str], *, from_: tuple[str, ...], now: dt.datetime, lease_s: float
) -> list[str]:
    """Move these rows (picked and locked) to `queued` with a fresh lease; answer those moved."""
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
    """Scheduled deliveries whose time has come: round-robin over tenants, earliest first in each.

    On PostgreSQL each tenant with due work gets a turn in every round (its
    earliest due row, then every tenant's second, ...), so that a tenant with
    50,000 due retries cannot hold another's five behind them
    (`_fair_due_sql`). SQLite (`hookline up`, one process) keeps the plain
    earliest-first order.
    """
    if not is_postgres(db.obj):
        return _take(
            lambda now: (Delivery.status == SCHEDULED) & (Delivery.next_attempt_at <= now),
            Delivery.next_attempt_at,
            from_=(SCHEDULED,),
            batch=batch,
            lease_s=lease_s,
        )
    now = utcnow()
    with db.atomic():
        picked = [row[0] for row in db.execute_sql(_FAIR_DUE_SQL, {"now": now, "batch": batch})]
        if not picked:
            return []
        # Locked as `_take` locks, skipping rows someone else holds (a cancel, a delete).
        locked = {
            row.id
            for row in Delivery.select(Delivery.id)
            .where(Delivery.id.in_(picked) & (Delivery.status == SCHEDULED))
            .for_update(skip_locked=True)
        }
        if not locked:
            return []
        moved = set(_queue(list(locked), from_=(SCHEDULED,), now=now, lease_s=lease_s))
    return [delivery_id for delivery_id in picked if delivery_id in moved]


# The tenants with scheduled deliveries, found by hopping along `delivery_due_tenant`
# (migration 13) one index probe per tenant, whatever their rows count; then each one's
# earliest due rows, numbered; then turn 1 of every tenant, turn 2, ... A tenant gives at
# most `batch` rows, and with many tenants fewer (4 x its equal share, at least 50), so the
# sort stays small. Tenants weigh the same. The row comparison keeps the planner on
# `delivery_due_tenant` (on `delivery_due` it filtered a large tenant's rows away one by
# one), and JIT is off for the transaction: the estimates of the recursion made PostgreSQL
# compile it, 170 ms for a 2 ms query (ops/bench/NOTES.md#fair-due-work).
_FAIR_DUE_SQL = """
SET LOCAL jit = off;
WITH RECURSIVE tenants(tenant_id) AS (
    (SELECT tenant_id FROM delivery WHERE status = 'scheduled' ORDER BY tenant_id LIMIT 1)
  UNION ALL
    SELECT (SELECT d.tenant_id FROM delivery d
            WHERE d.status = 'scheduled' AND d.tenant_id > t.tenant_id
            ORDER BY d.tenant_id LIMIT 1)
    FROM tenants t WHERE t.tenant_id IS NOT NULL
), present AS (
    SELECT tenant_id FROM tenants WHERE tenant_id IS NOT NULL
)
SELECT id FROM (
    SELECT picked.id, picked.next_attempt_at,
           row_number() OVER (PARTITION BY t.tenant_id ORDER BY picked.next_attempt_at) AS turn
    FROM present t
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM delivery d
        WHERE d.status = 'scheduled' AND d.tenant_id = t.tenant_id
          AND (d.tenant_id, d.next_attempt_at) <= (t.tenant_id, %(now)s)
        ORDER BY d.tenant_id, d.next_attempt_at
        LIMIT LEAST(
            %(batch)s, GREATEST(50, CEIL(%(batch)s * 4.0 / (SELECT count(*) FROM present)))
        )
    ) picked
) turns
ORDER BY turn, next_attempt_at
LIMIT %(batch)s
"""


def give_back(later: Sequence[tuple[str, float]], *, now: dt.datetime | None = None) -> int:
    """Claimed deliveries not attempted after all: back to `scheduled`, each after its delay (s).

    The claim's attempt is not spent (`attempts` goes back down), and only a claim
    still live is given back: a row whose lease ran out may be another worker's now.
    Answers how many moved. For a worker whose pipeline a host already crowds
    (`actors.pipeline.share`); the scheduler's `take_due` hands them out again.
    """
    if not later:
        return 0
    now = now or utcnow()
    due = Case(
        Delivery.id,
        [(delivery_id, now + dt.timedelta(seconds=delay)) for delivery_id, delay in later],
    )
    return states.move(
        Delivery.id.in_([delivery_id for delivery_id, _ in later]) & (Delivery.lease_until > now),
        to=SCHEDULED,
        from_=(DELIVERING,),
        attempts=Delivery.attempts - 1,
        next_attempt_at=due,
        lease_until=None,
        updated_at=now,
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
