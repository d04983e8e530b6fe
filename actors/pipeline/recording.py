"""The recorder: one thread that records the answers that arrived, in groups.

Each answer goes to one recorder thread, which records whatever has arrived
(from every message) in one transaction, so a fast endpoint's attempt is
committed within milliseconds of its answer whatever the rest of its message
is doing. `flush()` returns once every answer queued before it is recorded:
tests call it instead of sleeping through the gather window.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.pipeline.batch import Batch
from engine.db.connect import UNAVAILABLE_ERRORS
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision

log = structlog.get_logger("hookline.delivery")

# How long the recorder lets answers gather before it commits a group: every group costs
# round trips and a commit, so fewer, larger groups leave the cores to the attempts
# (ops/bench/NOTES.md#recorder-gather-time).
GATHER_S = 0.01
# Most attempts one recording transaction holds.
MAX_GROUP = 500
# Seconds between the recorder's tries when the database is unreachable.
RECORD_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 4.0)

Record = Callable[[Sequence[tuple[Claim, Outcome]]], list[Decision]]
AfterRecord = Callable[[Claim, Outcome, Decision], None]
# Called with the attempts of a group once it is recorded (True) or given up (False).
Finished = Callable[[list[tuple[Claim, Batch]], bool], None]
Answer = tuple[Claim, Outcome, Batch]


@dataclass
class _Flush:
    """A mark in the queue: set once everything queued before it is recorded."""

    done: threading.Event = field(default_factory=threading.Event)


class Recorder:
    """Records answers in groups, each in one transaction, on one thread of its own."""

    def __init__(
        self,
        *,
        record: Record,
        after_record: AfterRecord,
        connection: Callable[[], Any],
        finished: Finished,
        max_group: int = MAX_GROUP,
        backoff_s: Sequence[float] = RECORD_BACKOFF_S,
    ) -> None:
        self.record = record
        self.after_record = after_record
        self.connection = connection  # a context manager holding a database connection
        self.finished = finished
        self.max_group = max_group
        self.backoff_s = tuple(backoff_s)
        self.thread: threading.Thread | None = None
        self._answers: queue.SimpleQueue[Answer | _Flush | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False

    def put(self, claimed: Claim, outcome: Outcome, batch: Batch) -> None:
        """Queue one answer for recording."""
        self._answers.put((claimed, outcome, batch))

    def start(self) -> None:
        """Start the thread, unless it runs or the recorder was stopped."""
        with self._lock:
            if self.thread is None and not self._stopped:
                self.thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
                self.thread.start()

    def flush(self, timeout_s: float | None = None) -> None:
        """Return once every answer queued before the call is recorded.

        Without a running thread, records them on the calling thread.
        """
        thread = self.thread
        if thread is None or not thread.is_alive():
            self._record_queued()
            return
        mark = _Flush()
        self._answers.put(mark)
        mark.done.wait(timeout_s)

    def stop(self, timeout_s: float) -> None:
        """Record what is queued, then stop the thread (waiting at most `timeout_s`)."""
        with self._lock:
            self._stopped = True
            thread = self.thread
        self._answers.put(None)
        if thread is not None:
            thread.join(timeout_s)

    def _loop(self) -> None:
        # Sleep, then take what came meanwhile: waiting on the queue instead woke this
        # thread for every answer, each time taking the GIL from the event loop.
        while self._step(self._answers.get(), GATHER_S):
            pass

    def _step(self, first: Answer | _Flush | None, gather_s: float) -> bool:
        """Record `first` and what is queued behind it after `gather_s`; False at the stop."""
        if first is None:
            return False
        if isinstance(first, _Flush):
            first.done.set()
            return True
        if gather_s:
            time.sleep(gather_s)
        group, mark = self._take_group(first)
        self._record_group(group)
        if mark is not None:
            mark.done.set()
        return True

    def _take_group(self, first: Answer) -> tuple[list[Answer], _Flush | None]:
        """`first` and what is queued behind it, up to a group; and a flush mark met on the way."""
        group = [first]
        while len(group) < self.max_group:
            try:
                item = self._answers.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._answers.put(None)  # stop after this group
                break
            if isinstance(item, _Flush):
                return group, item
            group.append(item)
        return group, None

    def _record_queued(self) -> None:
        """Record, on this thread, everything queued now, in groups."""
        while True:
            try:
                first = self._answers.get_nowait()
            except queue.Empty:
                return
            if first is None:
                self._answers.put(None)
                return
            self._step(first, 0.0)

    def _record_group(self, group: list[Answer]) -> None:
        pairs = [(claimed, outcome) for claimed, outcome, _batch in group]
        decisions = self._store(pairs)
        if decisions is not None:
            for (claimed, outcome), decision in zip(pairs, decisions, strict=True):
                try:
                    self.after_record(claimed, outcome, decision)
                except Exception:  # reporting never costs a recorded attempt
                    log.exception("after_record_failed", delivery_id=claimed.delivery.id)
        self.finished([(c, b) for c, _o, b in group], decisions is not None)

    def _store(self, pairs: list[tuple[Claim, Outcome]]) -> list[Decision] | None:
        """Record the group, trying again while the database is unreachable; None if it failed."""
        for delay_s in (*self.backoff_s, None):
            try:
                with self.connection():
                    return self.record(pairs)
            except UNAVAILABLE_ERRORS as exc:
                if delay_s is None:
                    log.error("attempts_not_recorded", attempts=len(pairs), error=str(exc)[:200])
                    return None
                time.sleep(delay_s)
            except Exception:
                log.exception("attempts_not_recorded", attempts=len(pairs))
                return None
        return None
