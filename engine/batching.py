"""Group commit: what several threads submit at about the same time is flushed in one call.

Publishing one message and waiting for RabbitMQ to take responsibility for it
cost the API about as much CPU as the rest of a request, and RabbitMQ more:
the cost is per round trip and per commit, hardly per message. `GroupCommit`
shares that cost among the threads that need it at the same moment, without
making any of them wait for a batch to fill.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    """One submitted item: its result or error once flushed, or the batch it must lead."""

    __slots__ = ("batch", "done", "error", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        self.batch: list[_Slot[T, R]] | None = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released once, by whoever settles or promotes this slot

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """Runs `flush(items)` once for the items several threads submit together.

    A thread that submits while no flush runs leads: it flushes its item at
    once. Threads that submit during a flush queue up; when it ends, the
    leader wakes each thread of its batch with its result and hands the whole
    queue to the first queued thread, which leads the next flush. Every thread
    is woken once. `flush` answers one result per item, in order; if it
    raises, every thread of that batch gets the error.

    `then(items, results)`, if given, runs after a flush that succeeded, on
    the leader's thread, once the next batch may already be flushing and
    before any thread of this batch is woken: a second stage (publishing what
    was just committed) that overlaps the next batch's first. An exception
    in it is swallowed; `then` reports its own failures.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Sequence[R]],
        then: Callable[[list[T], list[R]], None] | None = None,
    ) -> None:
        self._flush = flush
        self._then = then
        self._lock = threading.Lock()
        self._queued: list[_Slot[T, R]] = []
        self._flushing = False

    def submit(self, item: T) -> R:
        """Flush `item`, with whatever else is queued; answer its result.

        Raises:
            Exception: whatever `flush` raised for the batch holding `item`.
        """
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            lead = not self._flushing
            if lead:
                self._flushing = True
                slot.batch = [slot]
            else:
                self._queued.append(slot)
        if not lead:
            slot.wake.acquire()
        while not slot.done:  # this thread leads `slot.batch`, which holds `slot`
            assert slot.batch is not None
            self._lead(slot.batch)
        return slot.outcome()

    def _lead(self, batch: list[_Slot[T, R]]) -> None:
        flushed = False
        try:
            self._run(batch)
            flushed = True
        finally:
            with self._lock:
                following, self._queued = self._queued, []
                self._flushing = bool(following)
            if following:
                following[0].batch = following
                following[0].wake.release()
            done = [slot for slot in batch if slot.error is None] if flushed else []
            if done and self._then is not None:
                results: list[Any] = [slot.result for slot in done]
                try:
                    self._then([slot.item for slot in done], results)
                except Exception:  # noqa: BLE001 - `then` reports its own failures
                    pass
            for settled in batch:
                if settled.done and settled.batch is not batch:
                    settled.wake.release()

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        """Flush one batch and settle every slot in it, also when the flush fails."""
        try:
            results = self._flush([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush answered {len(results)} results for {len(batch)}")
        except BaseException as exc:
            for slot in batch:
                slot.error, slot.done = exc, True
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like stop the leader too
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.done = result, True
