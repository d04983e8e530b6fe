"""The delivery's state machine: its states, where it starts, and every allowed move.

    pending      created by fan-out, not yet published
    queued       published, its lease running
    delivering   claimed by a worker for one attempt (fan-out may create it so)
    scheduled    waiting for `next_attempt_at`; without one, for its turn in its
                 endpoint's replay lane (`engine.replays.pacing`): a replay, a
                 backfill or a resume put it there, and the pacer queues it, paced
    succeeded    delivered: the end, unless a replay sends it again
    quarantined  not tried again on its own; an operator may retry or recover it
    cancelled    its endpoint was deleted or awaits verification, or was enabled
                 without replay
    parked       held back, spending no attempt, while its endpoint's breaker is open
                 or the endpoint is disabled; released to `scheduled` when that ends
    throttled    waiting, spending no attempt, for its endpoint's flow control: a rate,
                 an in-flight limit, its turn (FIFO) or a `Retry-After` pause;
                 released to `queued`, in order, as budget frees (`flow`)
    paused       its endpoint is paused by its owner: not attempted, not aged; a
                 resume hands it, in event order, to the replay lane (`scheduled`)

The usual path is pending -> queued -> delivering -> succeeded; a failed attempt
goes to scheduled (queued again when due) or to quarantined. `TRANSITIONS` is the
whole truth, each move with who makes it. Every status change is a conditional
UPDATE through `move` (or `update`, to add RETURNING), which refuses a move the
table lacks (`TransitionError`) before touching the database. A new state is added
to this table, with its moves, and nowhere else. The names are the column's
vocabulary, defined in `engine.db.models` beside the column; use them from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from engine.db.machine import StateMachine
from engine.db.models import (
    CANCELLED,
    DELIVERING,
    DELIVERY_STATES,
    OPEN_STATES,
    PARKED,
    PAUSED,
    PENDING,
    QUARANTINED,
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    THROTTLED,
    Delivery,
)

__all__ = [
    "CANCELLED",
    "CLAIMABLE",
    "DELIVERING",
    "DELIVERY_STATES",
    "INITIAL",
    "MACHINE",
    "OPEN_STATES",
    "PARKED",
    "PAUSED",
    "PENDING",
    "QUARANTINED",
    "QUEUED",
    "SCHEDULED",
    "SUCCEEDED",
    "THROTTLED",
    "TRANSITIONS",
    "check",
    "claimable",
    "initial",
    "move",
    "update",
]

# Fan-out inserts a delivery `pending` for a message, `delivering` when it claims it,
# `throttled` when its endpoint's flow control decides when it goes, or `paused` when its
# endpoint is paused; a backfill inserts it `scheduled`, waiting for the replay lane.
INITIAL = (PENDING, DELIVERING, THROTTLED, PAUSED, SCHEDULED)
# What a claim may take (a `delivering` one only once its lease ran out).
CLAIMABLE = (PENDING, QUEUED, DELIVERING)

_CLAIM_CANCELS = "claim: the endpoint is deleted or awaits verification"
_CLAIM_PARKS = "claim: the endpoint is disabled or its breaker open"
_DELETE_CANCELS = "endpoints.crud.delete_endpoint"
_CLAIM_HOLDS = "flow.hold: the claim found no budget (rate, in flight, FIFO turn, pause)"
_CLAIM_PAUSES = "claim: the endpoint is paused"
_REPLAYED = "replays.start: a replay puts it back in play, waiting for its lane"
_GIVEN_BACK = "replays.cancel: the replay was cancelled before its lane sent it"

TRANSITIONS: dict[str, dict[str, str]] = {
    PENDING: {
        QUEUED: "fanout.mark_queued after publishing; schedule.take_expired",
        DELIVERING: "record.claim_many",
        PARKED: _CLAIM_PARKS,
        CANCELLED: f"{_CLAIM_CANCELS}; {_DELETE_CANCELS}",
        THROTTLED: _CLAIM_HOLDS,
        PAUSED: _CLAIM_PAUSES,
    },
    QUEUED: {
        QUEUED: "schedule.take_expired: published but never claimed, published again",
        DELIVERING: "record.claim_many",
        PARKED: _CLAIM_PARKS,
        CANCELLED: f"{_CLAIM_CANCELS}; {_DELETE_CANCELS}",
        THROTTLED: _CLAIM_HOLDS,
        PAUSED: _CLAIM_PAUSES,
    },
    DELIVERING: {
        DELIVERING: "record.claim_many, once the lease of a crashed worker ran out",
        QUEUED: "schedule.take_expired: the worker's lease ran out",
        SUCCEEDED: "record.record_many: a 2xx answer; fanout.fan_out_and_claim: a first"
        " attempt's 2xx answer in before its delivery is written, written with it",
        SCHEDULED: "record.record_many: a failure with retries left",
        QUARANTINED: "record.record_many: a failure for good (schedule spent, too old, 410);"
        " lost.quarantine_lost: its claims kept dying with their worker",
        PARKED: f"{_CLAIM_PARKS}, once the lease ran out",
        CANCELLED: f"{_CLAIM_CANCELS}, once the lease ran out; {_DELETE_CANCELS}",
        THROTTLED: f"{_CLAIM_HOLDS}, once the lease ran out; flow.give_back: its worker"
        " reached it after its rate's slot passed, and did not send it",
        PAUSED: f"{_CLAIM_PAUSES}, once the lease ran out",
    },
    SCHEDULED: {
        QUEUED: "schedule.take_due; quarantine.retry_now; replays.pacing: its lane's turn",
        CANCELLED: f"{_DELETE_CANCELS}; {_GIVEN_BACK} (a backfill's)",
        QUARANTINED: _GIVEN_BACK,
        SUCCEEDED: _GIVEN_BACK,
    },
    SUCCEEDED: {
        SCHEDULED: _REPLAYED,
    },
    QUARANTINED: {
        QUEUED: "quarantine.retry_now",
        SCHEDULED: f"{_REPLAYED} (`recover` is one)",
        PARKED: "breakers.parking.enable with replay",
    },
    CANCELLED: {
        PARKED: "breakers.parking.enable with replay, cancelled since the outage began",
        SCHEDULED: f"{_REPLAYED}; replays.backfill: one never sent",
    },
    PARKED: {
        SCHEDULED: "breakers.parking.release, paced; release_one, as a half-open probe",
        CANCELLED: f"breakers.parking.enable without replay; {_DELETE_CANCELS}",
    },
    THROTTLED: {
        QUEUED: "flow.release: budget freed, the oldest first",
        CANCELLED: _DELETE_CANCELS,
    },
    PAUSED: {
        SCHEDULED: "replays.pause.resume: handed to the replay lane, in event order",
        CANCELLED: _DELETE_CANCELS,
    },
}


def claimable(now: dt.datetime) -> Any:
    """What a claim takes: `CLAIMABLE` rows, a `delivering` one once its lease ran out."""
    return Delivery.status.in_((PENDING, QUEUED)) | (
        (Delivery.status == DELIVERING) & (Delivery.lease_until < now)
    )


def still_ours(claims: Iterable[tuple[str, dt.datetime | None]]) -> Any:
    """Which of these claimed deliveries (id, the lease its claim took) are still
    `delivering` under that lease: one whose lease ran out is another worker's now. None
    when no claim took a lease."""
    claims = list(claims)
    ours: Any = None
    for lease_until in {lease for _id, lease in claims if lease is not None}:
        ids = [i for i, lease in claims if lease == lease_until]
        one = Delivery.id.in_(ids) & (Delivery.lease_until == lease_until)
        ours = one if ours is None else (ours | one)
    return None if ours is None else (Delivery.status == DELIVERING) & ours


MACHINE = StateMachine("delivery", Delivery.status, INITIAL, TRANSITIONS)
# Module-level verbs: `states.move(where, to=QUEUED, from_=(PENDING,), lease_until=...)`.
check = MACHINE.check
initial = MACHINE.check_initial
update = MACHINE.update
move = MACHINE.move
