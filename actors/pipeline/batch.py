"""One message's attempts in the pipeline, as its worker thread waits for them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim


@dataclass
class Batch:
    """One message's attempts: how many are not yet recorded, and whether any failed.

    Its fields change under the admission's lock (`Admission.lock`).
    """

    remaining: int
    failed: int = 0
    size: int = 0  # bytes the batch holds while in flight (see `admission.weigh`)
    done: threading.Event = field(default_factory=threading.Event)
    # Sent before its deliveries' transaction committed (`Pipeline.start_held`): answers
    # wait in `parked` until `release_held`, or are dropped after `drop_held`.
    held: bool = False
    dropped: bool = False
    parked: list[tuple[Claim, Outcome]] = field(default_factory=list)
    # Set once every attempt of a held batch has its answer parked (`Pipeline.take_settled`).
    answered: threading.Event = field(default_factory=threading.Event)
    # Successes the fan-out took to write in its own transaction: recorded with it.
    settled: list[tuple[Claim, Outcome]] = field(default_factory=list)

    def finish(self, ok: bool) -> bool:
        """Called once per attempt recorded or lost; True at the batch's last one."""
        self.remaining -= 1
        if not ok:
            self.failed += 1
        if self.remaining <= 0:
            self.done.set()
            return True
        return False
