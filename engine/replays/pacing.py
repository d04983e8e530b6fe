"""Replay lanes: each endpoint's replayed work, sent in event order at a bounded rate.

A replay, a backfill or a resume leaves deliveries `scheduled` without a
`next_attempt_at`: they wait in PostgreSQL (`delivery_paced`), not in memory and not
as messages, and their endpoint's lane is marked `waiting` (`open_lanes`). The
scheduler calls `pace` every `flow_interval_s`: each waiting lane refills its token
bucket at its rate (the slowest of the replays waiting in it, capped by the
endpoint's own `rate_limit_per_s`), moves that many of its oldest deliveries (event
order) to `queued` and answers them for publishing. One lane per endpoint, whatever
the number of replays, so two replays to one receiver never add up to a flood.

The bucket (`refilled`) holds a twentieth of a second's tokens, refilled at 95 % of the
rate, so that no second's paces send more than the lane's rate and the promised 10 %
above it is left to the way there. An
endpoint under flow control then holds what the lane queued as `throttled` (the claim
does), and its own throttle or FIFO turn decides.
A paused endpoint's lane waits until it is resumed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from peewee import Case

from engine.db.connect import is_postgres
from engine.db.models import Delivery, Endpoint, ReplayLane, db, utcnow
from engine.deliveries import flow, states
from engine.deliveries.states import QUEUED, SCHEDULED

# Most waiting lanes one pass looks at (the least recently paced first).
PACE_ENDPOINTS = 100

# A delivery waiting for its lane: scheduled, with no time of its own.
PACED_SQL = "d.status = 'scheduled' AND d.next_attempt_at IS NULL"

# Seconds of tokens a lane's bucket holds: its burst, the most a release sends at once.
BURST_S = 0.05
# The refill's share of the rate: with the burst, a second's releases reach the rate, no more.
REFILL_SHARE = 1.0 - BURST_S


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


def pace(*, lease_s: float, batch: int, now: dt.datetime | None = None) -> list[str]:
    """Queue what each waiting lane's rate allows now, oldest event first; answer the ids.

    The caller publishes them (`deliver`); one that is lost is published again once
    its `lease_s` lease runs out, like any queued delivery. A lane with nothing left
    stops waiting.
    """
    now = now or utcnow()
    if not ReplayLane.select().where(ReplayLane.waiting).exists():
        return []  # the common case: no write lock taken (SQLite), no transaction opened
    with flow.locking():
        query = (
            ReplayLane.select(ReplayLane, Endpoint)
            .join(Endpoint, on=(Endpoint.id == ReplayLane.endpoint_id), attr="endpoint_row")
            .where(ReplayLane.waiting)
            .order_by(ReplayLane.updated_at, ReplayLane.endpoint_id)
            .limit(PACE_ENDPOINTS)
        )
        if is_postgres(db.obj):
            query = query.for_update(of=ReplayLane, skip_locked=True)
        queued: list[str] = []
        for lane in query:
            queued.extend(_pace_one(lane, lease_s, batch, now))
    return queued


def capacity(rate_per_s: float) -> float:
    """Most tokens a lane's bucket holds: about a twentieth of a second's, one at the least.

    Exactly: as much as a second's refill leaves room for below the next whole request,
    so a full bucket and a second's refill together release at most `floor(rate)` (at
    20/s, 1.99: a bucket of one would drop the fraction a late release is owed).
    """
    return max(1.0, math.floor(rate_per_s) + 0.99 - rate_per_s * REFILL_SHARE)


def refilled(lane: Any, rate_per_s: float, now: dt.datetime) -> float:
    """The tokens the bucket holds at `now`: what it held, plus the time since at the
    refill's share of the rate.

    `lane` is a row with `tokens` and `tokens_at`.
    A bucket never used before starts full.
    """
    cap = capacity(rate_per_s)
    if lane.tokens_at is None:
        return cap
    elapsed = max(0.0, (now - lane.tokens_at).total_seconds())
    return min(cap, lane.tokens + elapsed * rate_per_s * REFILL_SHARE)


def lane_rate(lane: ReplayLane, endpoint: Endpoint) -> float:
    """The lane's rate, capped by the endpoint's own throttle."""
    if endpoint.rate_limit_per_s:
        return min(lane.rate_per_s, float(endpoint.rate_limit_per_s))
    return float(lane.rate_per_s)


def _pace_one(lane: Any, lease_s: float, batch: int, now: dt.datetime) -> list[str]:
    """What one lane sends now: a token each, oldest event first."""
    endpoint = lane.endpoint_row
    if endpoint.paused_at is not None:  # resumed later; let the other lanes go first
        _save(lane, {"updated_at": now})
        return []
    if endpoint.deleted_at is not None:
        tokens, want = None, batch  # the claim cancels them
    else:
        tokens = refilled(lane, lane_rate(lane, endpoint), now)
        want = min(batch, max(0, math.floor(tokens + 1e-9)))
    if want <= 0:
        return []
    picked = [
        row.id
        for row in Delivery.select(Delivery.id)
        .where((Delivery.endpoint_id == endpoint.id) & waiting_for_lane())
        .order_by(Delivery.event_created_at, Delivery.event_id)
        .limit(want)
    ]
    moved = _queue(picked, lease_s, now)
    changes: dict[str, Any] = {"updated_at": now}
    if len(picked) < want:
        changes["waiting"] = False
    if tokens is not None:
        changes.update(tokens=tokens - len(moved), tokens_at=now)
    _save(lane, changes)
    return moved


def _queue(picked: list[str], lease_s: float, now: dt.datetime) -> list[str]:
    """Move the picked deliveries from their lane to `queued`: back in play."""
    if not picked:
        return []
    taken: Any = (
        states.update(
            Delivery.id.in_(picked) & Delivery.next_attempt_at.is_null(),
            to=QUEUED,
            from_=(SCHEDULED,),
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
