"""Replay lanes: each endpoint's replayed work, sent in event order at a bounded rate.

A replay, a backfill or a resume leaves deliveries `scheduled` without a
`next_attempt_at`: they wait in PostgreSQL (`delivery_paced`), not in memory and not
as messages, and their endpoint's lane is marked `waiting` (`open_lanes`). The
scheduler calls `pace` every `flow_interval_s`: each waiting lane gives its oldest
deliveries (event order) *slots* at 90 % of its rate (`LANE_SHARE`; the rate is the
slowest of the replays waiting in it, capped by the endpoint's own `rate_limit_per_s`),
as flow control gives a rate-limited endpoint's (`engine.deliveries.slots`), moves
them to `queued` with their slot as `next_attempt_at` and answers them for publishing.
One lane per endpoint, whatever the number of replays, so two replays to one receiver
never add up to a flood.

The worker that claims one waits until its slot and sends only within `slots.LATE_S`
after it; one it reaches later goes back to its lane unsent (`give_back`), its
attempt not spent, for a new slot. A lane once paced by a token bucket at the
scheduler: when the scheduler's or a worker's thread was starved, what the bucket let
go in one second reached the receiver bunched (120 in one second at 100/s, in CI).
An endpoint under flow control holds what the lane queued as `throttled` (the
claim does), and its own throttle or FIFO turn decides. A paused endpoint's lane
waits until it is resumed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peewee import JOIN, Case

from engine.db.connect import is_postgres
from engine.db.models import Delivery, Endpoint, EndpointFlow, ReplayLane, db, utcnow
from engine.deliveries import flow, slots, states
from engine.deliveries.states import DELIVERING, QUEUED, SCHEDULED

# Most waiting lanes one pass looks at (the least recently paced first).
PACE_ENDPOINTS = 100

# The lanes' slots' share of their rate: below flow control's 95 %, so that what a starved
# machine bunches on the way still arrives within the rate + 10 %. The sends that start in a
# second had slots within 1 + `slots.LATE_S` s: 95 at 100/s; a stall of 0.15 s on the way
# (at the sender's loop or the receiver) shifts 14 more into a second, 109 at most. At 95 %,
# CI's busiest second, with both test passes on two cores, was 114.
LANE_SHARE = 0.9

# A delivery waiting for its lane: scheduled, with no time of its own.
PACED_SQL = "d.status = 'scheduled' AND d.next_attempt_at IS NULL"


@dataclass
class Paced:
    """What one pass queued, each lane's in event order.

    `at_slot` are sent at their slots: published as released (`deliver(ids,
    released=True)`), so the claim takes them with their slot. `to_flow` belong to
    endpoints under flow control, whose claim holds them for it, or deleted ones, whose
    claim cancels them: published plainly.
    """

    at_slot: list[str] = field(default_factory=list)
    to_flow: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return self.at_slot + self.to_flow

    def __len__(self) -> int:
        return len(self.at_slot) + len(self.to_flow)


def waiting_for_lane() -> Any:
    """The condition on `delivery` of a delivery waiting for its endpoint's lane."""
    return (Delivery.status == SCHEDULED) & Delivery.next_attempt_at.is_null()


def open_lanes(endpoint_ids: Iterable[str], rate_per_s: float, now: dt.datetime) -> None:
    """Mark these endpoints' lanes waiting, at `rate_per_s` or the slower rate already waiting.

    Call it in the transaction that left their deliveries waiting: it writes each lane's
    row, so a pass that holds one finishes first and the next sees the new deliveries,
    and a pass that comes after skips the locked row until they are committed.
    """
    ids = sorted(set(endpoint_ids))
    if not ids:
        return
    ReplayLane.insert_many(
        [
            {"endpoint_id": i, "rate_per_s": rate_per_s, "waiting": True, "updated_at": now}
            for i in ids
        ]
    ).on_conflict_ignore().execute()
    # Every row is written, so this waits for a pass holding one: it then sees these rows.
    slower = Case(
        None,
        [(ReplayLane.waiting & (ReplayLane.rate_per_s < rate_per_s), ReplayLane.rate_per_s)],
        rate_per_s,
    )
    ReplayLane.update(rate_per_s=slower, waiting=True).where(
        ReplayLane.endpoint_id.in_(ids)
    ).execute()


def pace(*, lease_s: float, batch: int, now: dt.datetime | None = None) -> Paced:
    """Queue what each waiting lane's slots allow now, oldest event first; answer the ids.

    `now` is the database's clock, on which slots are kept (`flow.database_now`). The
    caller publishes them (`deliver`); one that is lost is published again once its
    `lease_s` lease runs out, like any queued delivery. A lane with nothing left stops
    waiting.
    """
    paced = Paced()
    if not ReplayLane.select().where(ReplayLane.waiting).exists():
        return paced  # the common case: no write lock taken (SQLite), no transaction opened
    now = now or flow.database_now()
    with flow.locking():
        query = (
            ReplayLane.select(ReplayLane, Endpoint, EndpointFlow)
            .join(Endpoint, on=(Endpoint.id == ReplayLane.endpoint_id), attr="endpoint_row")
            .join_from(
                ReplayLane,
                EndpointFlow,
                JOIN.LEFT_OUTER,
                on=(EndpointFlow.endpoint_id == ReplayLane.endpoint_id),
                attr="flow_row",
            )
            .where(ReplayLane.waiting)
            .order_by(ReplayLane.updated_at, ReplayLane.endpoint_id)
            .limit(PACE_ENDPOINTS)
        )
        if is_postgres(db.obj):
            query = query.for_update(of=ReplayLane, skip_locked=True)
        for lane in query:
            moved = _pace_one(lane, lease_s, batch, now)
            (paced.at_slot if _sent_at_slot(lane, now) else paced.to_flow).extend(moved)
    return paced


def _sent_at_slot(lane: Any, now: dt.datetime) -> bool:
    """True when the lane's deliveries are sent at their slots: their endpoint is neither
    deleted nor under flow control."""
    endpoint = lane.endpoint_row
    return endpoint.deleted_at is None and not flow.controlled(endpoint, flow.joined(lane), now)


def lane_rate(lane: ReplayLane, endpoint: Endpoint) -> float:
    """The lane's rate, capped by the endpoint's own throttle."""
    if endpoint.rate_limit_per_s:
        return min(lane.rate_per_s, float(endpoint.rate_limit_per_s))
    return float(lane.rate_per_s)


def _pace_one(lane: Any, lease_s: float, batch: int, now: dt.datetime) -> list[str]:
    """What one lane sends now: a slot each, oldest event first."""
    endpoint = lane.endpoint_row
    if endpoint.paused_at is not None:  # resumed later; let the other lanes go first
        _save(lane, {"updated_at": now})
        return []
    given: list[dt.datetime] | None = None
    if endpoint.deleted_at is not None:
        want = batch  # the claim cancels them
    else:
        given = slots.assign(
            lane.next_slot_at, lane_rate(lane, endpoint), now, batch, share=LANE_SHARE
        )
        want = len(given)
    if want <= 0:
        return []
    picked = [
        row.id
        for row in Delivery.select(Delivery.id)
        .where((Delivery.endpoint_id == endpoint.id) & waiting_for_lane())
        .order_by(Delivery.event_created_at, Delivery.event_id)
        .limit(want)
    ]
    slot_of = None if given is None else dict(zip(picked, given, strict=False))
    moved = _queue(picked, slot_of, lease_s, now)
    changes: dict[str, Any] = {"updated_at": now}
    if len(picked) < want:
        changes["waiting"] = False
    if slot_of and picked:
        every = slots.spacing_s(lane_rate(lane, endpoint), LANE_SHARE)
        changes["next_slot_at"] = slot_of[picked[-1]] + dt.timedelta(seconds=every)
    _save(lane, changes)
    return moved


def _queue(
    picked: list[str], slot_of: dict[str, dt.datetime] | None, lease_s: float, now: dt.datetime
) -> list[str]:
    """Move the picked deliveries from their lane to `queued`, each with its slot (none
    for a deleted endpoint's): back in play."""
    if not picked:
        return []
    at = Case(Delivery.id, [(i, slot_of[i]) for i in picked]) if slot_of else None
    taken: Any = (
        states.update(
            Delivery.id.in_(picked) & Delivery.next_attempt_at.is_null(),
            to=QUEUED,
            from_=(SCHEDULED,),
            next_attempt_at=at,
            lease_until=now + dt.timedelta(seconds=lease_s),
            quarantine_reason=None,
            quarantined_at=None,
            quarantine_published_at=None,
            updated_at=now,
        )
        .returning(Delivery.id)
        .execute()
    )
    done = {row.id for row in taken}
    return [i for i in picked if i in done]


def give_back(
    missed: Sequence[tuple[str, str, dt.datetime | None]],
    rate_per_s: float,
    now: dt.datetime | None = None,
) -> int:
    """Lane deliveries whose slot passed before their worker could send them: waiting for
    their lane again, their attempt not spent; answer how many moved.

    `missed` holds each one's id, endpoint and the lease its claim took: one whose lease
    ran out is another worker's now, and stays. Their lanes wait again, at the rate they
    had (`rate_per_s` for a lane never opened), and give them new slots, oldest event
    first: before what the lane has not sent yet.
    """
    now = now or utcnow()
    ours = states.still_ours((i, lease) for i, _endpoint, lease in missed)
    if ours is None:
        return 0
    with flow.locking():  # the lane rows first, as `pace` takes them
        _reopen({endpoint for _id, endpoint, _lease in missed}, rate_per_s, now)
        return states.move(
            ours,
            to=SCHEDULED,
            from_=(DELIVERING,),
            attempts=Delivery.attempts - 1,
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )


def _reopen(endpoint_ids: Iterable[str], rate_per_s: float, now: dt.datetime) -> None:
    """Mark these endpoints' lanes waiting again, each at the rate it had."""
    ids = sorted(set(endpoint_ids))
    ReplayLane.insert_many(
        [
            {"endpoint_id": i, "rate_per_s": rate_per_s, "waiting": True, "updated_at": now}
            for i in ids
        ]
    ).on_conflict_ignore().execute()
    ReplayLane.update(waiting=True).where(ReplayLane.endpoint_id.in_(ids)).execute()


def _save(lane: Any, changes: dict[str, Any]) -> None:
    ReplayLane.update(**changes).where(ReplayLane.endpoint_id == lane.endpoint_id).execute()


def mark_orphans(rate_per_s: float, now: dt.datetime | None = None) -> list[str]:
    """Open the lane of every endpoint with deliveries waiting for one that is not open.

    The scheduler's safety net (a lane is opened in the transaction that fills it, so
    only a hand-made row or a bug leaves one); answers the endpoints opened.
    """
    now = now or utcnow()
    found = flow.endpoints_with(PACED_SQL, waiting_for_lane())
    if not found:
        return []
    open_already = {
        row.endpoint_id
        for row in ReplayLane.select(ReplayLane.endpoint_id).where(
            ReplayLane.endpoint_id.in_(found) & ReplayLane.waiting
        )
    }
    orphans = [i for i in found if i not in open_already]
    with db.atomic():
        open_lanes(orphans, rate_per_s, now)
    return orphans
