"""The endpoint's state machine: its states, its moves, and the one way to disable or enable.

    active      receives its events
    disabled    receives nothing: it answered 410 Gone, or its breaker stayed open
                too long; its deliveries are parked until an operator enables it
    unverified  receives nothing until it echoes a verification challenge

An endpoint is created `active`, or `unverified` when it must prove itself first.
`TRANSITIONS` is the whole truth, each move with who makes it. Every status change
is a conditional UPDATE through `move`, which refuses a move the table lacks
(`TransitionError`) before touching the database; `disable` and `enable` are the
only ways in and out of `disabled`. A new state (a pause, say) is added to this
table, with its moves, and nowhere else. The names are the column's vocabulary,
defined in `engine.db.models` beside the column; use them from here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.alerts import messages as alerts
from engine.breakers import alerting
from engine.breakers.state import Breaker, Window
from engine.db.machine import StateMachine
from engine.db.models import ENDPOINT_ACTIVE as ACTIVE
from engine.db.models import ENDPOINT_DISABLED as DISABLED
from engine.db.models import ENDPOINT_STATES as STATES
from engine.db.models import ENDPOINT_UNVERIFIED as UNVERIFIED
from engine.db.models import Endpoint

__all__ = [
    "ACTIVE",
    "DISABLED",
    "INITIAL",
    "MACHINE",
    "STATES",
    "TRANSITIONS",
    "UNVERIFIED",
    "check",
    "disable",
    "enable",
    "initial",
    "move",
]

INITIAL = (ACTIVE, UNVERIFIED)  # endpoints.crud.create_endpoint, `unverified` with `verify`

TRANSITIONS: dict[str, dict[str, str]] = {
    ACTIVE: {
        DISABLED: "disable: a 410 Gone (deliveries.record), or an outage past "
        "`disable_after_s` (breakers.tick)",
        UNVERIFIED: "endpoints.crud.update_endpoint: a verified endpoint's URL changed",
    },
    DISABLED: {
        ACTIVE: "enable: breakers.parking.enable, an operator's call",
    },
    UNVERIFIED: {
        ACTIVE: "endpoints.verification: the challenge was echoed",
    },
}

MACHINE = StateMachine("endpoint", Endpoint.status, INITIAL, TRANSITIONS)
# Module-level verbs: `states.move(where, to=ACTIVE, from_=(UNVERIFIED,), updated_at=now)`.
check = MACHINE.check
initial = MACHINE.check_initial
move = MACHINE.move


def disable(
    endpoint: Endpoint,
    reason: str,
    *,
    breaker: Breaker,
    dedup: str,
    now: dt.datetime,
    window: Window | None = None,
    **facts: Any,
) -> str | None:
    """Disable an active endpoint and record its `endpoint.disabled` alert; answer the alert.

    `breaker` is the endpoint's breaker as the alert reports it (the caller has
    it; this package never reads breaker rows), `dedup` keys the alert, and
    `facts` go into it beside `reason`. Answers None, emitting nothing, when the
    endpoint was not active any more (another caller disabled it first), or
    when this alert was recorded before.
    """
    moved = move(
        Endpoint.id == endpoint.id,
        to=DISABLED,
        from_=(ACTIVE,),
        disabled_reason=reason,
        disabled_at=now,
        updated_at=now,
    )
    if not moved:
        return None
    return alerting.about(
        endpoint, alerts.DISABLED, breaker, window, None, now, dedup=dedup, reason=reason, **facts
    )


def enable(endpoint_id: str, *, now: dt.datetime) -> bool:
    """Make a disabled endpoint active again, its reason cleared; answer whether it was disabled.

    An active endpoint is only touched (`updated_at`), as an operator's enable
    still changed it (its breaker). An unverified one is left as it is: only
    verification makes it active.
    """
    moved = move(
        Endpoint.id == endpoint_id,
        to=ACTIVE,
        from_=(DISABLED,),
        disabled_reason=None,
        disabled_at=None,
        updated_at=now,
    )
    if not moved:
        Endpoint.update(updated_at=now).where(
            (Endpoint.id == endpoint_id) & (Endpoint.status == ACTIVE)
        ).execute()
    return bool(moved)
