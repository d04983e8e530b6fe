"""A replay's life: started (its deliveries into their lanes), followed, cancelled, finished.

`start` moves the deliveries a `Selection` takes back to `scheduled` without a time,
each remembering the replay and the state it came from, and opens their endpoints'
lanes (`engine.replays.pacing`) in the same transaction. Each starts its retry
schedule and age limit over (`restarted_at`, `restart_attempts`), so an old or
exhausted delivery gets a full try. `cancel` gives back what its lanes have not sent
yet; the scheduler's `finish_done` marks it finished once each of its deliveries was
attempted. A delivery belongs to the replay that last took it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from engine.db.models import (
    CANCELLED,
    OPEN_STATES,
    QUARANTINED,
    SCHEDULED,
    SUCCEEDED,
    Delivery,
    Replay,
    db,
    utcnow,
)
from engine.db.pages import Page, paginate
from engine.deliveries import states as delivery_states
from engine.errors import ConflictError, NotFoundError
from engine.ids import new_id
from engine.replays import pacing
from engine.replays import states as replay_states
from engine.replays.matching import REPLAYABLE, Selection

REPLAY = "replay"
BACKFILL = "backfill"
RECOVER = "recover"


@dataclass(frozen=True)
class Progress:
    """A replay and how far it got: matched = waiting + queued + cancelled."""

    replay: Replay
    waiting: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def queued(self) -> int:
        """How many its lanes let go (sent, being sent, or retrying).

        Once it stopped running, whatever still waits in a lane was queued when it was
        cancelled and given back later, its slot missed: it is sent, so it counts.
        """
        waiting = self.waiting if self.replay.status == replay_states.RUNNING else 0
        return max(0, self.replay.matched - waiting - self.replay.cancelled)


def new_replay(selection: Selection, kind: str, rate_per_s: int, now: dt.datetime) -> Replay:
    """The replay's row, created `running` (the caller fills in what it matched)."""
    return Replay.create(
        id=new_id("rpl"),
        tenant_id=selection.tenant_id,
        kind=kind,
        endpoint_id=selection.endpoint_id,
        event_types=list(selection.event_types) if selection.event_types is not None else None,
        statuses=list(selection.statuses),
        since=selection.since,
        until=selection.until,
        rate_per_s=rate_per_s,
        status=replay_states.initial(replay_states.RUNNING),
        created_at=now,
        updated_at=now,
    )


def start(selection: Selection, *, rate_per_s: int, kind: str = REPLAY) -> Replay:
    """Put the selected deliveries back in play, paced; answer the replay.

    Raises:
        InvalidInputError: the selection's window or states are wrong.
    """
    selection.check()
    now = utcnow()
    with db.atomic():
        replay = new_replay(selection, kind, rate_per_s, now)
        matched = 0
        for status in selection.statuses:
            matched += delivery_states.move(
                selection.where(status),
                to=SCHEDULED,
                from_=(status,),
                **back_in_play(replay.id, status, now),
            )
        return opened(replay, matched, now)


def back_in_play(replay_id: str, replayed_from: str | None, now: dt.datetime) -> dict[str, Any]:
    """The columns of a delivery a replay puts in its lane, its schedule started over."""
    return {
        "replay_id": replay_id,
        "replayed_from": replayed_from,
        "next_attempt_at": None,
        "lease_until": None,
        "restarted_at": now,
        "restart_attempts": Delivery.attempts,
        "updated_at": now,
    }


def opened(replay: Replay, matched: int, now: dt.datetime) -> Replay:
    """Record what the replay matched and open its endpoints' lanes (finished if nothing)."""
    endpoints = [
        row.endpoint_id
        for row in Delivery.select(Delivery.endpoint_id)
        .where(Delivery.replay_id == replay.id)
        .distinct()
    ]
    pacing.open_lanes(endpoints, replay.rate_per_s, now)
    Replay.update(matched=matched).where(Replay.id == replay.id).execute()
    if not matched:
        replay_states.move(
            Replay.id == replay.id,
            to=replay_states.FINISHED,
            from_=(replay_states.RUNNING,),
            finished_at=now,
            updated_at=now,
        )
    return Replay.get_by_id(replay.id)


def get(tenant_id: str, replay_id: str) -> Replay:
    """One of the tenant's replays.

    Raises:
        NotFoundError: no such replay of this tenant.
    """
    row = Replay.get_or_none((Replay.id == replay_id) & (Replay.tenant_id == tenant_id))
    if row is None:
        raise NotFoundError("replay", replay_id)
    return row


def list_replays(tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """The tenant's replays, newest first."""
    return paginate(
        Replay.select().where(Replay.tenant_id == tenant_id), Replay.id, limit=limit, cursor=cursor
    )


def running() -> list[Replay]:
    """Every tenant's running replays, oldest first (for operators)."""
    return list(Replay.select().where(Replay.status == replay_states.RUNNING).order_by(Replay.id))


def cancel_any(replay_id: str) -> Replay:
    """Cancel a replay of whichever tenant (for operators); see `cancel`.

    Raises:
        NotFoundError: no such replay.
        ConflictError: the replay is not running.
    """
    row = Replay.get_or_none(Replay.id == replay_id)
    if row is None:
        raise NotFoundError("replay", replay_id)
    return cancel(row.tenant_id, replay_id)


def progress(replay: Replay) -> Progress:
    """How far a replay got, counted from its deliveries."""
    return progress_many([replay])[0]


def progress_many(rows: Sequence[Replay]) -> list[Progress]:
    """How far each replay got, in one query over their deliveries (a page's)."""
    waited = Delivery.next_attempt_at.is_null()
    counts: Any = (
        Delivery.select(Delivery.replay_id, Delivery.status, waited, fn.COUNT(Delivery.id))
        .where(Delivery.replay_id.in_([row.id for row in rows]))
        .group_by(Delivery.replay_id, Delivery.status, waited)
        .tuples()
    )
    by: dict[tuple[str, str, bool], int] = {(r, s, bool(w)): int(n) for r, s, w, n in counts}

    def total(replay_id: str, status: str) -> int:
        return by.get((replay_id, status, True), 0) + by.get((replay_id, status, False), 0)

    return [
        Progress(
            row,
            waiting=by.get((row.id, SCHEDULED, True), 0),
            succeeded=total(row.id, SUCCEEDED),
            failed=total(row.id, QUARANTINED),
            cancelled=row.cancelled + total(row.id, CANCELLED),
        )
        for row in rows
    ]


def cancel(tenant_id: str, replay_id: str) -> Replay:
    """Stop a running replay: what its lanes have not sent goes back where it was.

    What was already queued is sent; a backfill's deliveries not sent are cancelled.

    Raises:
        NotFoundError: no such replay of this tenant.
        ConflictError: the replay is not running.
    """
    replay = get(tenant_id, replay_id)
    now = utcnow()
    with db.atomic():
        moved = replay_states.move(
            Replay.id == replay.id,
            to=replay_states.CANCELLED,
            from_=(replay_states.RUNNING,),
            finished_at=now,
            updated_at=now,
        )
        if not moved:
            raise ConflictError(f"replay {replay.id} is {replay.status}; only a running one stops")
        back = _give_back(replay.id, now)
        Replay.update(cancelled=back).where(Replay.id == replay.id).execute()
    return Replay.get_by_id(replay.id)


def _give_back(replay_id: str, now: dt.datetime) -> int:
    """Move the replay's deliveries its lanes have not sent back where they were; how many."""
    back = 0
    waiting = (Delivery.replay_id == replay_id) & pacing.waiting_for_lane()
    given = {"replay_id": None, "replayed_from": None, "updated_at": now}
    for previous in REPLAYABLE:
        back += delivery_states.move(
            waiting & (Delivery.replayed_from == previous),
            to=previous,
            from_=(SCHEDULED,),
            **given,
        )
    return back + delivery_states.move(  # a backfill's: never sent, so cancelled
        waiting & Delivery.replayed_from.is_null(),
        to=CANCELLED,
        from_=(SCHEDULED,),
        last_error="replay cancelled",
        **given,
    )


def finish_done(now: dt.datetime | None = None) -> list[str]:
    """Mark finished every running replay none of whose deliveries still awaits its attempt.

    Answers the replays finished. The scheduler runs it every pass.
    """
    now = now or utcnow()
    done = []
    for replay in Replay.select(Replay.id).where(Replay.status == replay_states.RUNNING):
        awaiting = Delivery.select(Delivery.id).where(
            (Delivery.replay_id == replay.id)
            & Delivery.status.in_(list(OPEN_STATES))
            & (Delivery.attempts == Delivery.restart_attempts)
        )
        if awaiting.exists():
            continue
        if replay_states.move(
            Replay.id == replay.id,
            to=replay_states.FINISHED,
            from_=(replay_states.RUNNING,),
            finished_at=now,
            updated_at=now,
        ):
            done.append(replay.id)
    return done
