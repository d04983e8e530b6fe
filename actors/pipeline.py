"""A worker process's attempts in flight: sent on the event loop, recorded in groups.

A `deliver` message carries up to `deliver_batch` delivery ids. Its worker
thread claims them in two round trips, builds and signs the requests, and
hands them to the process's event loop, where they are sent concurrently.
Each answer goes to one recorder thread, which records whatever has arrived
(from every message) in one transaction, so a fast endpoint's attempt is
committed within milliseconds of its answer whatever the rest of its message
is doing. A fan-out hands its claims over before its transaction commits
(`start_held`): those answers are parked until the commit succeeded, and
never recorded if it failed.

The worker thread waits until its attempts are recorded, then returns, and
dramatiq acks the message: the state change is committed before the ack. An
attempt still unanswered after `deliver_handoff_s` (an endpoint that hangs
until the timeout) is left to finish alone and the thread goes back to work,
so a few slow endpoints cannot hold every thread. Nothing is lost by that:
the delivery was committed as `delivering` with a lease when it was claimed,
and if the process dies before the late answer is recorded, the scheduler's
lease sweep publishes it again.

`worker_max_in_flight` bounds the attempts a process holds, finished-but-not-
recorded and handed-off ones included: a thread waits for room before it
claims, which is the backpressure that keeps memory flat.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.db.connect import UNAVAILABLE_ERRORS
from engine.deliveries.client import Outcome, Request
from engine.deliveries.record import Claim
from engine.retry import Decision

log = structlog.get_logger("hookline.delivery")

# How long the recorder lets answers gather before it commits a group. Every group costs
# four round trips and a commit, in the worker and in PostgreSQL: at the lag scenario's
# half load (128 events/s x 10 endpoints) 2 ms made groups of one to three attempts and
# kept the cores 95 % busy, 10 ms kept them 86-93 % busy and halved the lag to a first
# attempt. An answer is still recorded within milliseconds of its arrival.
GATHER_S = 0.01
# Most attempts one recording transaction holds.
MAX_GROUP = 500
# Seconds between the recorder's tries when the database is unreachable.
RECORD_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 4.0)

Record = Callable[[Sequence[tuple[Claim, Outcome]]], list[Decision]]
AfterRecord = Callable[[Claim, Outcome, Decision], None]


class RecordingFailed(Exception):
    """Some attempts of a message could not be recorded; their leases will run out."""


@dataclass
class Batch:
    """One message's attempts, as its worker thread waits for them."""

    remaining: int
    failed: int = 0
    size: int = 0  # bytes the batch holds while in flight (see `Pipeline.weigh`)
    done: threading.Event = field(default_factory=threading.Event)
    # Sent before its deliveries' transaction committed (`Pipeline.start_held`): answers
    # wait in `parked` until `release_held`, or are dropped after `drop_held`.
    held: bool = False
    dropped: bool = False
    parked: list[tuple[Claim, Outcome]] = field(default_factory=list)

    def finish(self, ok: bool) -> bool:
        """Called by the recorder, once per attempt (under the pipeline's lock); True at the end."""
        self.remaining -= 1
        if not ok:
            self.failed += 1
        if self.remaining <= 0:
            self.done.set()
            return True
        return False


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
    ) -> None:
        self.record = record
        self.after_record = after_record
        self.connection = connection  # a context manager holding a database connection
        self.handoff_s = handoff_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        # Payload bytes held by the batches in flight; 0 = not bounded. Counting attempts
        # alone, 1,024 attempts of distinct 256 KiB events would hold about 512 MiB.
        self.max_in_flight_bytes = max_in_flight_bytes
        self.in_flight_bytes = 0
        self._waiting = 0  # threads in reserve() or drain(), to notify only when someone waits
        self._room = threading.Condition()
        self._answers: queue.SimpleQueue[tuple[Claim, Outcome, Batch] | None] = queue.SimpleQueue()
        self._tasks: set[asyncio.Future[Outcome]] = set()
        self._recorder: threading.Thread | None = None
        self._stopped = False

    # Worker threads --------------------------------------------------------

    def reserve(self, count: int) -> None:
        """Wait until `count` more attempts fit (a larger batch waits for an empty pipeline)."""
        if count <= 0:
            return
        with self._room:
            self._wait_locked(lambda: self._count_fits(count))
            self.in_flight += count

    def release(self, count: int) -> None:
        """Give back room reserved for attempts that will not be made."""
        if count <= 0:
            return
        with self._room:
            self.in_flight -= count
            if self._waiting:
                self._room.notify_all()

    def run(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Request], Any],
        work: Sequence[tuple[Claim, Request | Outcome]],
    ) -> int:
        """Send (or, for a ready outcome, just record) each; answer how many were handed off.

        Room for every item must have been reserved. Waits until all are recorded
        or `handoff_s` passes, whichever is first.

        Raises:
            RecordingFailed: an attempt's recording failed for good.
        """
        if not work:
            return 0
        self._ensure_recorder()
        batch = Batch(len(work), size=self.weigh(work) if self.max_in_flight_bytes else 0)
        self._hold_bytes(batch.size)
        self._start(loop, send, work, batch)
        return self.wait(batch)

    def start_held(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Request], Any],
        work: Sequence[tuple[Claim, Request | Outcome]],
    ) -> Batch | None:
        """Start sending before the deliveries are committed, if there is room now; else None.

        Takes the room itself, without waiting: the caller holds a transaction
        open. Nothing of the batch is recorded until `release_held(batch)`
        (the deliveries are committed) or ever, after `drop_held(batch)` (the
        transaction failed). Then `wait(batch)`, as `run` does.
        """
        if not work:
            return None
        size = self.weigh(work) if self.max_in_flight_bytes else 0
        with self._room:
            if not (self._count_fits(len(work)) and self._bytes_fit(size)):
                return None
            self.in_flight += len(work)
            if self.max_in_flight_bytes:
                self.in_flight_bytes += size
        self._ensure_recorder()
        batch = Batch(len(work), size=size, held=True)
        self._start(loop, send, work, batch)
        return batch

    def release_held(self, batch: Batch) -> None:
        """The batch's deliveries are committed: record its answers, those parked first."""
        with self._room:
            batch.held = False
            parked, batch.parked = batch.parked, []
        for claimed, outcome in parked:
            self._answers.put((claimed, outcome, batch))

    def drop_held(self, batch: Batch) -> None:
        """The batch's deliveries were never committed: record none of its answers."""
        with self._room:
            batch.dropped = True  # before `held` changes: `_to_recorder` reads both unlocked
            batch.held = False
            parked, batch.parked = batch.parked, []
        if parked:
            self._finish([(claimed, batch) for claimed, _outcome in parked], ok=False)

    def wait(self, batch: Batch) -> int:
        """Wait until the batch is recorded or `handoff_s` passes; answer how many were handed off.

        Raises:
            RecordingFailed: an attempt's recording failed for good.
        """
        if not batch.done.wait(self.handoff_s):
            with self._room:
                handed_off = batch.remaining
            if handed_off:
                log.info("delivery_handed_off", attempts=handed_off, waited_s=self.handoff_s)
                return handed_off
        with self._room:
            failed = batch.failed
        if failed:
            raise RecordingFailed(f"{failed} attempt(s) not recorded; their leases will expire")
        return 0

    def _start(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Request], Any],
        work: Sequence[tuple[Claim, Request | Outcome]],
        batch: Batch,
    ) -> None:
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
            with self._room:
                if batch.held:
                    batch.parked.append((claimed, outcome))
                    return
            if batch.dropped:
                self._finish([(claimed, batch)], ok=False)
                return
        self._answers.put((claimed, outcome, batch))

    @staticmethod
    def weigh(work: Sequence[tuple[Claim, Request | Outcome]]) -> int:
        """The bytes a batch holds: each event's body, and its stored payload, once."""
        sizes: dict[str, int] = {}
        for claimed, item in work:
            body = len(item.body) if isinstance(item, Request) else 0
            sizes[claimed.event.id] = body + len(claimed.event.payload or "")
        return sum(sizes.values())

    def _hold_bytes(self, size: int) -> None:
        """Wait until `size` more bytes fit (a larger batch waits for no bytes in flight)."""
        if not self.max_in_flight_bytes or size <= 0:
            return
        with self._room:
            self._wait_locked(lambda: self._bytes_fit(size))
            self.in_flight_bytes += size

    def _count_fits(self, count: int) -> bool:
        return not self.in_flight or self.in_flight + count <= self.max_in_flight

    def _bytes_fit(self, size: int) -> bool:
        return (
            not self.max_in_flight_bytes
            or not self.in_flight_bytes
            or self.in_flight_bytes + size <= self.max_in_flight_bytes
        )

    def _wait_locked(self, fits: Callable[[], bool]) -> None:
        """Wait, holding `_room`, until `fits()`; a waiter is notified by every release."""
        while not fits():
            self._waiting += 1
            try:
                self._room.wait()
            finally:
                self._waiting -= 1

    # The event loop --------------------------------------------------------

    def _launch(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Request], Any],
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
            self._finish([(claimed, batch)], ok=False)
            return
        self._to_recorder(claimed, task.result(), batch)

    # The recorder thread ---------------------------------------------------

    def _ensure_recorder(self) -> None:
        with self._room:
            if self._recorder is None and not self._stopped:
                self._recorder = threading.Thread(target=self._record_loop, name="recorder")
                self._recorder.daemon = True
                self._recorder.start()

    def _record_loop(self) -> None:
        while True:
            first = self._answers.get()
            if first is None:
                return
            # Sleep, then take what came meanwhile: waiting on the queue instead woke this
            # thread for every answer, each time taking the GIL from the event loop.
            time.sleep(GATHER_S)
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._answers.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._answers.put(None)  # stop after this group
                    break
                group.append(item)
            self._record_group(group)

    def _record_group(self, group: list[tuple[Claim, Outcome, Batch]]) -> None:
        pairs = [(claimed, outcome) for claimed, outcome, _batch in group]
        decisions: list[Decision] | None = None
        for delay_s in (*RECORD_BACKOFF_S, None):
            try:
                with self.connection():
                    decisions = self.record(pairs)
                break
            except UNAVAILABLE_ERRORS as exc:
                if delay_s is None:
                    log.error("attempts_not_recorded", attempts=len(group), error=str(exc)[:200])
                    break
                time.sleep(delay_s)
            except Exception:
                log.exception("attempts_not_recorded", attempts=len(group))
                break
        if decisions is not None:
            for (claimed, outcome), decision in zip(pairs, decisions, strict=True):
                try:
                    self.after_record(claimed, outcome, decision)
                except Exception:  # reporting never costs a recorded attempt
                    log.exception("after_record_failed", delivery_id=claimed.delivery.id)
        self._finish([(c, b) for c, _o, b in group], ok=decisions is not None)

    def _finish(self, items: list[tuple[Claim, Batch]], *, ok: bool) -> None:
        with self._room:
            for _claimed, batch in items:
                if batch.finish(ok) and self.max_in_flight_bytes:
                    self.in_flight_bytes -= batch.size
            self.in_flight -= len(items)
            if self._waiting:
                self._room.notify_all()

    # Shutdown --------------------------------------------------------------

    def drain(self, timeout_s: float) -> int:
        """Wait for every attempt in flight to be recorded, then stop the recorder.

        Answers how many were still in flight when the time ran out (their
        leases will run out and the scheduler publishes them again).
        """
        deadline = time.monotonic() + timeout_s
        with self._room:
            self._waiting += 1
            while self.in_flight and time.monotonic() < deadline:
                self._room.wait(max(0.0, deadline - time.monotonic()))
            self._waiting -= 1
            left = self.in_flight
            self._stopped = True
            recorder = self._recorder
        self._answers.put(None)
        if recorder is not None:
            recorder.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if left:
            log.warning("attempts_left_in_flight", attempts=left)
        return left
