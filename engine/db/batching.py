"""Group commit: what several threads submit at about the same time is flushed in one call.

A commit, to PostgreSQL or to RabbitMQ, costs per round trip, hardly per row
or message (ops/bench/NOTES.md#event-group-commit). `GroupCommit` shares that
cost among the threads that need it at the same moment, without making any of
them wait for a batch to fill.
"""

from __future__ import annotations

import asyncio
import os
import queue
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


class BackgroundCommit(Generic[T, R]):
    """`GroupCommit` for coroutines: `await submit(item)`, flushed on a thread of its own.

    The coroutines of an event loop never wait on a lock: each queues its item
    and awaits a future. One thread takes everything queued, runs
    `flush(items)`, then `then(items, results)` if given (publishing what was
    just committed), and settles the batch's futures, waking each event loop
    once for its whole share. While it works, the next batch gathers: the
    busier the callers, the larger each batch and the cheaper each item. (One
    thread, not a second overlapping `then` with the next flush, which made the
    batches smaller: ops/bench/NOTES.md#event-group-commit.)

    The thread starts on the first submit in a process, so a fork before that
    (gunicorn's) leaves no half-copied thread behind.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Sequence[R]],
        then: Callable[[list[T], list[R]], None] | None = None,
        *,
        name: str = "group-commit",
    ) -> None:
        self._flush = flush
        self._then = then
        self._name = name
        self._queue: queue.SimpleQueue[_Pending[T, R]] = queue.SimpleQueue()
        self._owner: int | None = None  # the process whose thread runs, if any
        self._starting = threading.Lock()

    async def submit(self, item: T) -> R:
        """Flush `item` with whatever else is queued; answer its result.

        Raises:
            Exception: whatever `flush` raised for the batch holding `item`.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self._owner != os.getpid():
            self._start()
        self._queue.put(_Pending(item, future, loop))
        return await future

    def _start(self) -> None:
        with self._starting:
            if self._owner == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._run, args=(self._queue,), name=self._name, daemon=True
            )
            thread.start()
            self._owner = os.getpid()

    def _run(self, queued: queue.SimpleQueue[_Pending[T, R]]) -> None:
        while True:
            batch = [queued.get()]
            while True:
                try:
                    batch.append(queued.get_nowait())
                except queue.Empty:
                    break
            items = [pending.item for pending in batch]
            results: list[Any] | None
            try:
                results = list(self._flush(items))
                if len(results) != len(batch):
                    raise RuntimeError(f"flush answered {len(results)} results for {len(batch)}")
            except Exception as exc:  # noqa: BLE001 - every submitter of the batch gets it
                results = None
                for pending in batch:
                    pending.error = exc
            if results is not None and self._then is not None:
                try:
                    self._then(items, results)
                except Exception:  # noqa: BLE001 - `then` reports its own failures
                    pass
            _settle(batch, results)


class _Pending(Generic[T, R]):
    """One submitted item, the future its coroutine awaits, and that coroutine's loop."""

    __slots__ = ("error", "future", "item", "loop")

    def __init__(self, item: T, future: asyncio.Future[R], loop: asyncio.AbstractEventLoop) -> None:
        self.item = item
        self.future = future
        self.loop = loop
        self.error: BaseException | None = None


def _settle(batch: list[_Pending[T, R]], results: list[Any] | None) -> None:
    """Hand each future its result or error on its own loop: one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending[T, R], Any]]] = {}
    for index, pending in enumerate(batch):
        value = results[index] if results is not None else None
        by_loop.setdefault(pending.loop, []).append((pending, value))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:  # that loop is closed: nobody awaits these any more
            pass


def _resolve(settled: list[tuple[_Pending[T, R], Any]]) -> None:
    for pending, value in settled:
        if pending.future.done():  # cancelled while it was being flushed
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(value)
