"""Flow control: how fast, how many at once and in what order an endpoint receives.

An endpoint is *controlled* when it has a `rate_limit_per_s`, a `max_in_flight`,
`ordering: "fifo"`, a concurrency adaptive control learnt (`engine.deliveries.adaptive`),
a `Retry-After` pause running, or a hold (`held`: its tenant is suspended or being
deleted, `engine.lifecycle`; `release` gives a held endpoint nothing). Everything else
takes the claim's fast path and costs nothing here.

A controlled endpoint's attempts start in one place only: `release`. Its new
deliveries are created `throttled` (fan-out), and a claim that meets one of its
deliveries in any other way (a retry come due, a lease run out) moves it to
`throttled` too (`hold`). There it waits in PostgreSQL, spending no attempt; its
message is acknowledged, so nothing waits in a worker's memory or as an unacked
message. `release` locks the endpoint's one `endpoint_flow` row (shared by every
worker on every host), counts its live `delivering` rows, gives a rate's slots
(`engine.deliveries.slots`: each released delivery carries the time it may be sent,
and the worker waits for it), and claims what the rate, the in-flight limit and (FIFO)
the turn allow, oldest event first, for the caller to publish as already claimed
(`deliver(ids, released=True)`). That is a few statements per release, never one per
attempt, and exact across processes. The scheduler releases every
`flow_interval_s` (what time frees: slots, the end of a pause); a worker releases
an endpoint as soon as it recorded one of its attempts (an in-flight slot or a FIFO
turn just freed). A delivery its worker reached after its slot passed comes back
unsent (`give_back`) and waits for a new one.

FIFO: only the endpoint's oldest open delivery (ingest order: the event's
`created_at`, then its time-sorted id) may start, only while nothing else of it is
open, and only once no older event of its tenant still awaits fan-out. A head that
fails waits for its retry, and everything behind it waits too, until it succeeds or
is quarantined (or cancelled).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import Case, fn

from engine.db.connect import is_postgres
from engine.db.models import (
    FIFO,
    Delivery,
    Endpoint,
    EndpointFlow,
    db,
    utcnow,
)
from engine.deliveries import fifo, slots, states
from engine.deliveries.states import CLAIMABLE, DELIVERING, QUEUED, THROTTLED, claimable

# Most waiting endpoints one release pass looks at (the least recently released first).
RELEASE_ENDPOINTS = 100


@dataclass(frozen=True)
class Limits:
    """What bounds one endpoint's flow now; None: that bound is absent."""

    rate_per_s: float | None
    in_flight: int | None
    fifo: bool
    paused_until: dt.datetime | None

    @property
    def any(self) -> bool:
        return (
            self.rate_per_s is not None
            or self.in_flight is not None
            or self.fifo
            or self.paused_until is not None
        )


def limits(endpoint: Endpoint, flow: EndpointFlow | None, now: dt.datetime) -> Limits:
    """The bounds in force: the subscriber's settings, then what adaptive control learnt.

    The tightest in-flight bound wins: `max_in_flight`, the learnt concurrency, and one
    for FIFO.
    """
    bounds = [endpoint.max_in_flight]
    paused = None
    if flow is not None:
        bounds.append(flow.concurrency)
        if flow.paused_until is not None and flow.paused_until > now:
            paused = flow.paused_until
    fifo = endpoint.ordering == FIFO
    if fifo:
        bounds.append(1)
    present = [b for b in bounds if b is not None]
    return Limits(
        rate_per_s=float(endpoint.rate_limit_per_s) if endpoint.rate_limit_per_s else None,
        in_flight=min(present) if present else None,
        fifo=fifo,
        paused_until=paused,
    )


def joined(row: Any) -> EndpointFlow | None:
    """The endpoint's flow row a query outer-joined as `flow_row` (a claim's, a replay
    lane's); None when the endpoint has none (the join's row is then all NULL)."""
    found = getattr(row, "flow_row", None)
    return found if found is not None and found.endpoint_id is not None else None


def controlled(endpoint: Endpoint, flow: EndpointFlow | None, now: dt.datetime) -> bool:
    """True when the endpoint's deliveries wait for `release` (`limits(...).any`, cheaper:
    every fan-out and claim asks it of every delivery)."""
    if (
        endpoint.rate_limit_per_s is not None
        or endpoint.max_in_flight is not None
        or endpoint.ordering == FIFO
    ):
        return True
    if flow is None:
        return False
    if flow.held:
        return True
    return flow.concurrency is not None or (
        flow.paused_until is not None and flow.paused_until > now
    )


def room(bounds: Limits, in_flight: int) -> int | None:
    """How many more the pause and the in-flight bound let start now; None: no bound.

    A rate bounds them further by its slots (`engine.deliveries.slots`).
    """
    if bounds.paused_until is not None:
        return 0
    if bounds.in_flight is not None:
        return max(0, bounds.in_flight - in_flight)
    return None


def hold(delivery_ids: Sequence[str], now: dt.datetime | None = None) -> int:
    """Move claimable deliveries to `throttled`, spending no attempt; answer how many moved.

    The caller marks their endpoints `waiting` (`mark_waiting`), so a release finds them.
    """
    if not delivery_ids:
        return 0
    now = now or utcnow()
    return states.move(
        Delivery.id.in_(list(delivery_ids)) & claimable(now),
        to=THROTTLED,
        from_=CLAIMABLE,
        lease_until=None,
        next_attempt_at=None,
        updated_at=now,
    )


def give_back(
    missed: Sequence[tuple[str, str, dt.datetime | None]], now: dt.datetime | None = None
) -> int:
    """Deliveries whose slot passed before their worker could send them: `throttled` again,
    their attempt not spent; answer how many moved (`engine.deliveries.slots`).

    `missed` holds each one's id, endpoint and the lease its claim took: one whose lease
    ran out is another worker's now, and stays. Their endpoints wait again, so a release
    gives them new slots.
    """
    now = now or utcnow()
    ours = states.still_ours((i, lease) for i, _endpoint, lease in missed)
    if ours is None:
        return 0
    with locking():  # the flow rows first, as every transaction takes them
        mark_waiting({endpoint for _id, endpoint, _lease in missed}, now)
        return states.move(
            ours,
            to=THROTTLED,
            from_=(DELIVERING,),
            attempts=Delivery.attempts - 1,
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )


def mark_waiting(endpoint_ids: Iterable[str], now: dt.datetime | None = None) -> list[str]:
    """Record that these endpoints have deliveries waiting as `throttled`.

    Answers those that were not waiting before: only they need a release at once (the
    others have one coming). The row is written only by that change, so the fan-outs
    and claims of a busy endpoint do not queue on its lock. A release that ends the
    endpoint's wait while a fan-out it cannot see yet adds to it can leave that
    fan-out's deliveries unmarked: `mark_orphans` finds them on the next pass.
    """
    ids = sorted(set(endpoint_ids))
    if not ids:
        return []
    now = now or utcnow()
    _ensure(ids, now)
    flipped: Any = (
        EndpointFlow.update(waiting=True, updated_at=now)
        .where(EndpointFlow.endpoint_id.in_(ids) & ~EndpointFlow.waiting)
        .returning(EndpointFlow.endpoint_id)
        .execute()
    )
    return sorted(row.endpoint_id for row in flipped)


def mark_orphans(now: dt.datetime | None = None) -> list[str]:
    """Mark waiting every endpoint with `throttled` deliveries that is not: answer them.

    The scheduler's safety net for the race `mark_waiting` leaves. On PostgreSQL the
    endpoints are found by hopping `delivery_throttled` (one index probe per endpoint
    with waiting deliveries), not by reading every waiting row.
    """
    now = now or utcnow()
    found = endpoints_with("status = 'throttled'", Delivery.status == THROTTLED)
    if not found:
        return []
    return mark_waiting(found, now)


def endpoints_with(condition_sql: str, condition: Any) -> list[str]:
    """The endpoints with deliveries meeting a condition a partial index covers.

    On PostgreSQL by a loose index scan (one index probe per endpoint found), with the
    condition as SQL over `delivery` (aliased `d` inside); elsewhere by `condition`.
    """
    if is_postgres(db.obj):
        cursor = db.execute_sql(_HOP_SQL.format(condition=condition_sql))
        return [row[0] for row in cursor.fetchall()]
    query = Delivery.select(Delivery.endpoint_id).where(condition).distinct()
    return [row.endpoint_id for row in query]


# Each endpoint with deliveries meeting `condition`, hopping along its partial index.
_HOP_SQL = """
WITH RECURSIVE hop(endpoint_id) AS (
    (SELECT endpoint_id FROM delivery d WHERE {condition}
     ORDER BY endpoint_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.endpoint_id FROM delivery d
            WHERE {condition} AND d.endpoint_id > hop.endpoint_id
            ORDER BY d.endpoint_id LIMIT 1)
    FROM hop WHERE hop.endpoint_id IS NOT NULL
)
SELECT endpoint_id FROM hop WHERE endpoint_id IS NOT NULL
"""


def database_now() -> dt.datetime:
    """The database's clock, as the tables store time (naive UTC): PostgreSQL's
    `clock_timestamp()`; on SQLite, one host's, this one's.

    Slots are given and kept on it (`release`, `record.claim_many`), so hosts whose
    clocks disagree by more than a slot's allowed lateness do not miss every slot.
    """
    if not is_postgres(db.obj):
        return utcnow()
    row = db.execute_sql("SELECT clock_timestamp() AT TIME ZONE 'UTC'").fetchone()
    clock: dt.datetime = row[0]
    return clock


def host_ahead() -> dt.timedelta:
    """How far this host's clock is ahead of the database's (0 on SQLite: one host)."""
    if not is_postgres(db.obj):
        return dt.timedelta(0)
    before = utcnow()
    database = database_now()
    return before + (utcnow() - before) / 2 - database


def release(
    endpoint_ids: Sequence[str] | None = None,
    *,
    lease_s: float,
    batch: int = 500,
    now: dt.datetime | None = None,
) -> list[str]:
    """Release waiting deliveries as their endpoints' flow allows; answer the ids released.

    Looks at the given endpoints, or at up to `RELEASE_ENDPOINTS` waiting ones, the least
    recently released first, so every waiting endpoint gets its turn. Each gives what
    its bounds leave room for now, at most `batch`, oldest event first, and pays for it:
    a token each, and a place among its attempts in flight (those released and not yet
    claimed count). A FIFO endpoint gives its head when its turn has come. The released
    rows move to `queued` under a `lease_s` lease; the caller publishes them as released
    (`deliver(ids, released=True)`), which the claim lets through without holding them
    again. An endpoint with nothing left waiting stops waiting. A row another release
    holds is skipped: that one does the work.
    """
    now = now or database_now()
    with locking():
        query = (
            EndpointFlow.select(EndpointFlow, Endpoint)
            .join(Endpoint, on=(Endpoint.id == EndpointFlow.endpoint_id), attr="endpoint_row")
            .where(EndpointFlow.waiting & ~EndpointFlow.held)
        )
        if endpoint_ids is not None:
            if not endpoint_ids:
                return []
            query = query.where(EndpointFlow.endpoint_id.in_(sorted(set(endpoint_ids))))
        query = query.order_by(EndpointFlow.updated_at, EndpointFlow.endpoint_id).limit(
            RELEASE_ENDPOINTS
        )
        if is_postgres(db.obj):
            query = query.for_update(of=EndpointFlow, skip_locked=True)
        flows = list(query)
        if not flows:
            return []
        busy = _in_flight([f.endpoint_id for f in flows], now, include_queued=True)
        released: list[str] = []
        for flow in flows:
            released.extend(_release_one(flow, busy.get(flow.endpoint_id, 0), lease_s, batch, now))
    return released


def locking() -> Any:
    """A transaction that takes its write lock at once on SQLite (where rows are not locked)."""
    if is_postgres(db.obj):
        return db.atomic()
    return db.atomic(lock_type="IMMEDIATE")


def _release_one(flow: Any, busy: int, lease_s: float, batch: int, now: dt.datetime) -> list[str]:
    """What one waiting endpoint gives now: as many as its room and its rate's slots allow,
    or its FIFO head."""
    endpoint = flow.endpoint_row
    bounds = limits(endpoint, flow, now)
    given: list[dt.datetime] | None = None
    if endpoint.deleted_at is not None:
        want = batch  # the claim cancels them
    elif bounds.fifo:
        picked, exhausted = _head_if_its_turn(endpoint.id, bounds, busy)
        slot_of = None
        if picked and bounds.rate_per_s:  # its turn has come; its rate says when
            given = slots.assign(flow.next_slot_at, bounds.rate_per_s, now, len(picked))
            picked, slot_of = picked[: len(given)], dict(zip(picked, given, strict=False))
        return _offer(flow, picked, exhausted=exhausted, slot_of=slot_of, lease_s=lease_s, now=now)
    else:
        free = room(bounds, busy)
        want = batch if free is None else min(batch, free)
        if bounds.rate_per_s:
            given = slots.assign(flow.next_slot_at, bounds.rate_per_s, now, want)
            want = len(given)
    if want <= 0:
        return []
    picked = [
        row.id
        for row in Delivery.select(Delivery.id)
        .where((Delivery.endpoint_id == endpoint.id) & (Delivery.status == THROTTLED))
        .order_by(Delivery.event_created_at, Delivery.event_id)
        .limit(want)
    ]
    slot_of = None if given is None else dict(zip(picked, given, strict=False))
    return _offer(
        flow, picked, exhausted=len(picked) < want, slot_of=slot_of, lease_s=lease_s, now=now
    )


def _head_if_its_turn(endpoint_id: str, bounds: Limits, busy: int) -> tuple[list[str], bool]:
    """A FIFO endpoint's head, when it waits and its turn has come; and whether none is open.

    Its turn comes once nothing else of the endpoint is in flight or released, no pause
    runs and no older event of its tenant awaits fan-out.
    """
    head, blocked = fifo.turn(endpoint_id)
    if head is None:  # nothing open: nothing waits any more
        return [], True
    waits = head.status == THROTTLED
    if not waits or blocked or busy or bounds.paused_until is not None:
        return [], False
    return [head.id], False


def _offer(
    flow: Any,
    picked: list[str],
    *,
    exhausted: bool,
    slot_of: dict[str, dt.datetime] | None,
    lease_s: float,
    now: dt.datetime,
) -> list[str]:
    """Move the picked waiting deliveries to `queued`, each with its slot if the endpoint
    has a rate (`next_attempt_at`, None without); answer those moved.

    `exhausted`: nothing more waits, so the endpoint stops waiting. The endpoint's next
    free slot follows the last slot given.
    """
    moved: list[str] = []
    if picked:
        at: Any = None
        if slot_of:
            at = Case(Delivery.id, [(i, slot_of[i]) for i in picked])
        taken: Any = (
            states.update(
                Delivery.id.in_(picked),
                to=QUEUED,
                from_=(THROTTLED,),
                lease_until=now + dt.timedelta(seconds=lease_s),
                next_attempt_at=at,
                updated_at=now,
            )
            .returning(Delivery.id)
            .execute()
        )
        done = {row.id for row in taken}
        moved = [i for i in picked if i in done]
    changes: dict[str, Any] = {"updated_at": now}
    if exhausted:
        changes["waiting"] = False
    if slot_of and picked:
        every = slots.spacing_s(flow.endpoint_row.rate_limit_per_s)
        changes["next_slot_at"] = slot_of[picked[-1]] + dt.timedelta(seconds=every)
    EndpointFlow.update(**changes).where(EndpointFlow.endpoint_id == flow.endpoint_id).execute()
    return moved


def set_held(endpoint_ids: Sequence[str], held: bool, now: dt.datetime | None = None) -> int:
    """Hold the endpoints' deliveries (True) or let them go again (False); answer rows changed.

    A held endpoint is controlled: its new and claimed deliveries wait as `throttled`,
    and `release` skips it, so they wait in PostgreSQL, in order, spending no attempt.
    Let go, the next release pass gives them as the endpoint's flow allows.
    """
    ids = sorted(set(endpoint_ids))
    if not ids:
        return 0
    now = now or utcnow()
    _ensure(ids, now)
    return int(
        EndpointFlow.update(held=held, updated_at=now)
        .where(EndpointFlow.endpoint_id.in_(ids) & (EndpointFlow.held != held))
        .execute()
    )


def _ensure(endpoint_ids: Sequence[str], now: dt.datetime) -> None:
    """Create the endpoints' flow rows that do not exist yet.

    On SQLite this write also takes the database's write lock for the transaction.
    """
    EndpointFlow.insert_many(
        [{"endpoint_id": i, "updated_at": now} for i in endpoint_ids]
    ).on_conflict_ignore().execute()


def lock(endpoint_ids: list[str], now: dt.datetime) -> dict[str, EndpointFlow]:
    """The endpoints' flow rows, created if missing and locked until the transaction ends.

    Every transaction locks them in one order (by id), and before any delivery row.
    """
    _ensure(endpoint_ids, now)
    query = EndpointFlow.select().where(EndpointFlow.endpoint_id.in_(endpoint_ids))
    if is_postgres(db.obj):
        query = query.order_by(EndpointFlow.endpoint_id).for_update()
    return {row.endpoint_id: row for row in query}


def _in_flight(
    endpoint_ids: list[str], now: dt.datetime, *, include_queued: bool
) -> dict[str, int]:
    """Each endpoint's attempts under a live lease: `delivering`, and `queued` if asked.

    A lease that ran out is a worker that died: its attempt no longer counts.
    """
    if not endpoint_ids:
        return {}
    statuses = (DELIVERING, QUEUED) if include_queued else (DELIVERING,)
    rows: Any = (
        Delivery.select(Delivery.endpoint_id, fn.COUNT(Delivery.id).alias("n"))
        .where(
            Delivery.endpoint_id.in_(endpoint_ids)
            & Delivery.status.in_(statuses)
            & (Delivery.lease_until >= now)
        )
        .group_by(Delivery.endpoint_id)
        .tuples()
    )
    return {endpoint_id: int(n) for endpoint_id, n in rows}


def in_flight(endpoint_id: str, now: dt.datetime | None = None) -> int:
    """The endpoint's attempts in flight now (live `delivering` rows)."""
    return _in_flight([endpoint_id], now or utcnow(), include_queued=False).get(endpoint_id, 0)
