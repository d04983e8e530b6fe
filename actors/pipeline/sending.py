"""The pipeline's sending side: attempts launched on the event loop, batches waited for.

A worker thread hands its claimed attempts over (`run`) and waits until they
are recorded or `handoff_s` passes. A fan-out may hand its attempts over
before its transaction commits (`start_held`): their answers are parked
until the commit succeeded (`release_held`), and never recorded if it failed
(`drop_held`). The successes among the answers in by the time it writes its
deliveries it may take (`take_settled`) and write in its own transaction,
already succeeded: no recording transaction, no second write of the row.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from actors.pipeline.admission import Admission, weigh
from actors.pipeline.batch import Batch
from actors.pipeline.recording import AfterRecord, Record, Recorder
from actors.pipeline.share import HostShare
from engine.deliveries.client import Outcome, Request
from engine.deliveries.hostgate import host_key
from engine.deliveries.record import Claim
from engine.retry import Decision

log = structlog.get_logger("hookline.delivery")

Work = Sequence[tuple[Claim, Request | Outcome]]
SUCCEEDED = Decision("succeed")  # what every success decides (`engine.retry.decide`)
Send = Callable[[Request], Any]


class RecordingFailed(Exception):
    """Some attempts of a message could not be recorded; their leases will run out."""


class Pipeline:
    """Sends claimed attempts on one event loop and records them on one thread."""

    def __init__(
        self,
        *,
        record: Record,
        after_record: AfterRecord,
        connection: Callable[[], Any],
        handoff_s: float,
        max_in_flight: int,
        max_in_flight_bytes: int = 0,
        host_share: int = 0,
    ) -> None:
        self.handoff_s = handoff_s
        # Each host's share of a crowded pipeline (`actors.pipeline.share`); 0: no shares.
        self.shares = HostShare(host_share, max_in_flight // 2) if host_share else None
        self.after_record = after_record
        self.admission = Admission(max_in_flight, max_in_flight_bytes)
        self.recorder = Recorder(
            record=record, after_record=after_record, connection=connection, finished=self._finish
        )
        self._tasks: set[asyncio.Future[Outcome]] = set()

    @property
    def in_flight(self) -> int:
        """Attempts in flight, finished-but-not-recorded and handed-off ones included."""
        return self.admission.in_flight

    @property
    def in_flight_bytes(self) -> int:
        """Payload bytes the batches in flight hold (0 unless bounded)."""
        return self.admission.in_flight_bytes

    def reserve(self, count: int) -> None:
        """Wait until `count` more attempts fit (a larger batch waits for an empty pipeline)."""
        self.admission.reserve(count)

    def release(self, count: int) -> None:
        """Give back room reserved for attempts that will not be made."""
        self.admission.release(count)

    def split(self, claimed: Sequence[Claim]) -> tuple[list[Claim], list[tuple[Claim, float]]]:
        """The claims to attempt now, and those over their host's share, each with its delay (s).

        See `actors.pipeline.share`: nothing is held back until the pipeline is crowded.
        """
        if self.shares is None or not claimed:
            return list(claimed), []
        keys = [host_key(one.endpoint.url) for one in claimed]
        with self.admission.lock:
            kept, later = self.shares.split(keys, time.monotonic())
        return [claimed[i] for i in kept], [(claimed[i], delay) for i, delay in later]

    def run(self, loop: asyncio.AbstractEventLoop, send: Send, work: Work) -> int:
        """Send (or, for a ready outcome, just record) each; answer how many were handed off.

        Room for every item must have been reserved. Waits until all are recorded
        or `handoff_s` passes, whichever is first.

        Raises:
            RecordingFailed: an attempt's recording failed for good.
        """
        if not work:
            return 0
        self.recorder.start()
        batch = Batch(len(work), size=weigh(work) if self.admission.weighs else 0)
        self.admission.hold_bytes(batch.size)
        self._start(loop, send, work, batch)
        return self.wait(batch)

    def start_held(self, loop: asyncio.AbstractEventLoop, send: Send, work: Work) -> Batch | None:
        """Start sending before the deliveries are committed, if there is room now; else None.

        Takes the room itself, without waiting: the caller holds a transaction
        open. Nothing of the batch is recorded until `release_held(batch)`
        (the deliveries are committed) or ever, after `drop_held(batch)` (the
        transaction failed). Then `wait(batch)`, as `run` does.
        """
        if not work:
            return None
        size = weigh(work) if self.admission.weighs else 0
        if not self.admission.take_now(len(work), size):
            return None
        self.recorder.start()
        batch = Batch(len(work), size=size, held=True)
        self._start(loop, send, work, batch)
        return batch

    def take_settled(self, batch: Batch, wait_s: float) -> list[tuple[Claim, Outcome]]:
        """Wait up to `wait_s` for a held batch's answers; take the successes parked by then.

        The caller writes them with its deliveries, in the transaction that
        holds the batch: after `release_held` they count as recorded (and are
        reported as the recorder reports), after `drop_held` as lost, like the
        rest of the batch. The other answers stay parked for the recorder.
        """
        if wait_s > 0:
            batch.answered.wait(wait_s)
        with self.admission.lock:
            if not batch.held:
                return []
            taken = [(c, o) for c, o in batch.parked if o.success]
            batch.parked = [(c, o) for c, o in batch.parked if not o.success]
            batch.settled.extend(taken)
        return taken

    def release_held(self, batch: Batch) -> None:
        """The batch's deliveries are committed: record its answers, those parked first.

        The settled ones were written with the deliveries: they are recorded now.
        """
        with self.admission.lock:
            batch.held = False
            parked, batch.parked = batch.parked, []
            settled, batch.settled = batch.settled, []
        for claimed, outcome in settled:
            try:
                self.after_record(claimed, outcome, SUCCEEDED)
            except Exception:  # reporting never costs a recorded attempt
                log.exception("after_record_failed", delivery_id=claimed.delivery.id)
        if settled:
            self._finish([(claimed, batch) for claimed, _outcome in settled], True)
        for claimed, outcome in parked:
            self.recorder.put(claimed, outcome, batch)

    def drop_held(self, batch: Batch) -> None:
        """The batch's deliveries were never committed: record none of its answers."""
        with self.admission.lock:
            batch.dropped = True  # before `held` changes: `_to_recorder` reads both unlocked
            batch.held = False
            parked, batch.parked = batch.parked + batch.settled, []
            batch.settled = []
        if parked:
            self._finish([(claimed, batch) for claimed, _outcome in parked], False)

    def wait(self, batch: Batch) -> int:
        """Wait until the batch is recorded or `handoff_s` passes; answer how many were handed off.

        Raises:
            RecordingFailed: an attempt's recording failed for good.
        """
        if not batch.done.wait(self.handoff_s):
            with self.admission.lock:
                handed_off = batch.remaining
            if handed_off:
                log.info("delivery_handed_off", attempts=handed_off, waited_s=self.handoff_s)
                return handed_off
        with self.admission.lock:
            failed = batch.failed
        if failed:
            raise RecordingFailed(f"{failed} attempt(s) not recorded; their leases will expire")
        return 0

    def drain(self, timeout_s: float) -> int:
        """Wait for every attempt in flight to be recorded, then stop the recorder.

        Answers how many were still in flight when the time ran out (their
        leases will run out and the scheduler publishes them again).
        """
        deadline = time.monotonic() + timeout_s
        left = self.admission.wait_empty(timeout_s)
        self.recorder.stop(max(0.0, deadline - time.monotonic()) + 1.0)
        if left:
            log.warning("attempts_left_in_flight", attempts=left)
        return left

    def _start(self, loop: asyncio.AbstractEventLoop, send: Send, work: Work, batch: Batch) -> None:
        if self.shares is not None:
            keys = [host_key(claimed.endpoint.url) for claimed, _item in work]
            with self.admission.lock:
                self.shares.started(keys)
        to_send: list[tuple[Claim, Request]] = []
        for claimed, item in work:
            if isinstance(item, Outcome):
                self._to_recorder(claimed, item, batch)
            else:
                to_send.append((claimed, item))
        if to_send:
            loop.call_soon_threadsafe(self._launch, loop, send, to_send, batch)

    def _to_recorder(self, claimed: Claim, outcome: Outcome, batch: Batch) -> None:
        """Queue an answer for the recorder, unless its batch is held or dropped."""
        if batch.held or batch.dropped:  # only ever set on a held batch: then decide locked
            with self.admission.lock:
                if batch.held:
                    batch.parked.append((claimed, outcome))
                    if len(batch.parked) + len(batch.settled) >= batch.remaining:
                        batch.answered.set()
                    return
            if batch.dropped:
                self._finish([(claimed, batch)], False)
                return
        self.recorder.put(claimed, outcome, batch)

    # The event loop --------------------------------------------------------

    def _launch(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Send,
        to_send: list[tuple[Claim, Request]],
        batch: Batch,
    ) -> None:
        for claimed, request in to_send:
            task = loop.create_task(send(request))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._answered, claimed=claimed, batch=batch))

    def _answered(self, task: asyncio.Future[Outcome], *, claimed: Claim, batch: Batch) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            # Only a stopping loop cancels; send() itself never raises. The lease sweep
            # makes the attempt again.
            self._finish([(claimed, batch)], False)
            return
        self._to_recorder(claimed, task.result(), batch)

    def _finish(self, items: list[tuple[Claim, Batch]], ok: bool) -> None:
        """The attempts ended, recorded (`ok`) or not: their batches move on, their room frees."""
        with self.admission.lock:
            freed_bytes = sum(batch.size for _claimed, batch in items if batch.finish(ok))
            self.admission.free(len(items), freed_bytes)
            if self.shares is not None:
                keys = [host_key(claimed.endpoint.url) for claimed, _batch in items]
                self.shares.finished(keys, time.monotonic())
