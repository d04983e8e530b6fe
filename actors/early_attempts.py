"""The one place a fan-out's first attempts leave before its transaction commits.

Writing a fan-out's deliveries and committing them is the longest step between an
event's fan-out and its first attempt under load
(ops/bench/NOTES.md#fan-out-sends-before-its-commit). With
`HOOKLINE_EARLY_FIRST_ATTEMPTS` (the default) the attempts of the deliveries the
fan-out claims start from inside its transaction, as soon as it knows them; their
answers are parked until the commit succeeded and never recorded if it failed
(`Pipeline.start_held`). The successes among the answers in by the time the
fan-out writes its deliveries are written with them, already succeeded
(`settle`): it waits up to `SETTLE_WAIT_S` for them, the recorder's own gather
time. Turned off, the fan-out commits, then sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from actors import requests
from actors.pipeline import Batch
from actors.pipeline.recording import GATHER_S
from actors.runtime import Runtime
from engine.deliveries import fanout
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim

# How long a fan-out waits for its first attempts' answers before writing its deliveries:
# as long as the recorder would gather them (ops/bench/NOTES.md#settled-first-attempts).
SETTLE_WAIT_S = GATHER_S


class EarlyAttempts:
    """Starts one fan-out's claimed attempts inside its transaction, when there is room."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.work: requests.Work | None = None  # signed inside the transaction
        self.batch: Batch | None = None  # started inside it; None: no room was free
        self.kept: list[Claim] | None = None  # the claims attempted (None: not split yet)
        self.later: list[tuple[Claim, float]] = []  # over their host's share: given back

    def before_writing(self, plan: fanout.FanOut) -> None:
        """Sign the claimed attempts and start them, if they fit now (the transaction is open)."""
        if not plan.claimed:
            return
        pipeline = requests.pipeline_of(self.rt)
        self.kept, self.later = pipeline.split(plan.claimed)
        if not self.kept:
            return
        self.work = requests.build(self.rt, self.kept)
        self.batch = pipeline.start_held(
            requests.event_loop(self.rt), requests.sender(self.rt), self.work
        )

    def settle(self, plan: fanout.FanOut) -> Sequence[tuple[Claim, Outcome]]:
        """The claimed attempts that succeeded by now (waiting a little): written with the plan."""
        if self.batch is None:
            return ()
        return requests.pipeline_of(self.rt).take_settled(self.batch, SETTLE_WAIT_S)

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        """Around the transaction: its attempts' answers recorded if it committed, else never."""
        pipeline = requests.pipeline_of(self.rt)
        try:
            yield
        except BaseException:
            # Not committed (or not known to be): nothing is recorded for these attempts, and
            # the message is retried. An endpoint may thus get the event twice, as it may
            # whenever an answer is lost; the webhook-id is the same both times.
            if self.batch is not None:
                pipeline.drop_held(self.batch)
            raise
        if self.batch is not None:
            pipeline.release_held(self.batch)
        if self.later:  # committed as claimed: given back now, unattempted
            requests.give_back(self.rt, self.later)
