"""The delivery's state machine: its states, where it starts, and every allowed move.

    pending      created by fan-out, not yet published
    queued       published, its lease running
    delivering   claimed by a worker for one attempt (fan-out may create it so)
    scheduled    waiting for `next_attempt_at`
    succeeded    delivered: the end
    quarantined  not tried again on its own; an operator may retry or recover it
    cancelled    its endpoint was deleted or awaits verification, or was enabled
                 without replay
    parked       held back, spending no attempt, while its endpoint's breaker is open
                 or the endpoint is disabled; released to `scheduled` when that ends
    throttled    waiting, spending no attempt, for its endpoint's flow control: a rate,
                 an in-flight limit, its turn (FIFO) or a `Retry-After` pause;
                 released to `queued`, in order, as budget frees (`flow`)

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
from typing import Any

from engine.db.machine import StateMachine
from engine.db.models import (
    CANCELLED,
    DELIVERING,
    DELIVERY_STATES,
    OPEN_STATES,
    PARKED,
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

# Fan-out inserts a delivery `pending` for a message, `delivering` when it claims it, or
# `throttled` when its endpoint's flow control decides when it goes.
INITIAL = (PENDING, DELIVERING, THROTTLED)
# What a claim may take (a `delivering` one only once its lease ran out).
CLAIMABLE = (PENDING, QUEUED, DELIVERING)

_CLAIM_CANCELS = "claim: the endpoint is deleted or awaits verification"
_CLAIM_PARKS = "claim: the endpoint is disabled or its breaker open"
_DELETE_CANCELS = "endpoints.crud.delete_endpoint"
_CLAIM_HOLDS = "flow.hold: the claim found no budget (rate, in flight, FIFO turn, pause)"

TRANSITIONS: dict[str, dict[str, str]] = {
    PENDING: {
        QUEUED: "fanout.mark_queued after publishing; schedule.take_expired",
        DELIVERING: "record.claim_many",
        PARKED: _CLAIM_PARKS,
        CANCELLED: f"{_CLAIM_CANCELS}; {_DELETE_CANCELS}",
        THROTTLED: _CLAIM_HOLDS,
    },
    QUEUED: {
        QUEUED: "schedule.take_expired: published but never claimed, published again",
        DELIVERING: "record.claim_many",
        PARKED: _CLAIM_PARKS,
        CANCELLED: f"{_CLAIM_CANCELS}; {_DELETE_CANCELS}",
        THROTTLED: _CLAIM_HOLDS,
    },
    DELIVERING: {
        DELIVERING: "record.claim_many, once the lease of a crashed worker ran out",
        QUEUED: "schedule.take_expired: the worker's lease ran out",
        SUCCEEDED: "record.record_many: a 2xx answer; fanout.fan_out_and_claim: a first"
        " attempt's 2xx answer in before its delivery is written, written with it",
        SCHEDULED: "record.record_many: a failure with retries left",
        QUARANTINED: "record.record_many: a failure for good (schedule spent, too old, 410)",
        PARKED: f"{_CLAIM_PARKS}, once the lease ran out",
        CANCELLED: f"{_CLAIM_CANCELS}, once the lease ran out; {_DELETE_CANCELS}",
        THROTTLED: f"{_CLAIM_HOLDS}, once the lease ran out",
    },
    SCHEDULED: {
        QUEUED: "schedule.take_due; quarantine.retry_now",
        CANCELLED: _DELETE_CANCELS,
    },
    SUCCEEDED: {},
    QUARANTINED: {
        QUEUED: "quarantine.retry_now",
        SCHEDULED: "quarantine.recover",
        PARKED: "breakers.parking.enable with replay",
    },
    CANCELLED: {
        PARKED: "breakers.parking.enable with replay, cancelled since the outage began",
    },
    PARKED: {
        SCHEDULED: "breakers.parking.release, paced; release_one, as a half-open probe",
        CANCELLED: f"breakers.parking.enable without replay; {_DELETE_CANCELS}",
    },
    THROTTLED: {
        QUEUED: "flow.release: budget freed, the oldest first",
        CANCELLED: _DELETE_CANCELS,
    },
}


def claimable(now: dt.datetime) -> Any:
    """What a claim takes: `CLAIMABLE` rows, a `delivering` one once its lease ran out."""
    return Delivery.status.in_((PENDING, QUEUED)) | (
        (Delivery.status == DELIVERING) & (Delivery.lease_until < now)
    )


MACHINE = StateMachine("delivery", Delivery.status, INITIAL, TRANSITIONS)
# Module-level verbs: `states.move(where, to=QUEUED, from_=(PENDING,), lease_until=...)`.
check = MACHINE.check
initial = MACHINE.check_initial
update = MACHINE.update
move = MACHINE.move
