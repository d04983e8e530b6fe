"""The replay's state machine: running until everything it took was sent, or cancelled.

    running    its deliveries wait in their endpoints' replay lanes, or are being sent
    finished   each of its deliveries was attempted at least once (retries may follow,
               as for any delivery), or ended otherwise
    cancelled  stopped: what its lanes had not sent yet went back where it was

Every status change is a conditional UPDATE through `move`, checked against
`TRANSITIONS` first (`engine.db.machine`).
"""

from __future__ import annotations

from engine.db.machine import StateMachine
from engine.db.models import (
    REPLAY_CANCELLED,
    REPLAY_FINISHED,
    REPLAY_RUNNING,
    REPLAY_STATES,
    Replay,
)

__all__ = [
    "CANCELLED",
    "FINISHED",
    "MACHINE",
    "REPLAY_STATES",
    "RUNNING",
    "TRANSITIONS",
    "move",
]

RUNNING = REPLAY_RUNNING
FINISHED = REPLAY_FINISHED
CANCELLED = REPLAY_CANCELLED

# A replay is created `running`, or `finished` at once when it matched nothing.
INITIAL = (RUNNING, FINISHED)

TRANSITIONS: dict[str, dict[str, str]] = {
    RUNNING: {
        FINISHED: "replays.finish_done: nothing of it waits to be sent for the first time",
        CANCELLED: "replays.cancel: the operator stopped it",
    },
    FINISHED: {},
    CANCELLED: {},
}

MACHINE = StateMachine("replay", Replay.status, INITIAL, TRANSITIONS)
move = MACHINE.move
initial = MACHINE.check_initial
