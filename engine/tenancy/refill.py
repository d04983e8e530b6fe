"""The rate limiter's background thread: leases refilled before requests lack them.

`engine.tenancy.limiter` asks a `Refiller` for what its leases will soon
lack (the rest of a chunk, the next window's first chunk, the sweep of old
windows) and goes on deciding requests from memory. The thread takes
everything asked since it last looked and hands it to the limiter's `work` in
one batch, so a busy process leases many buckets in one statement.

It checks a pooled connection out for each batch and back in at once, as the
event inserts' thread does (`engine.events.ingest`): the pool is sized to the
API's threads, and a connection held while idle would be missing there. A
busy refiller loses nothing by it: a connection checked in less than a second
ago is handed out again without a probe (`engine.shortcuts.pool`).

Nothing stops the thread but `close`: a batch that fails (the database gone,
or a bug) is logged and handed to `fail`, which sends its buckets the
blocking way, and the thread waits for the next.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import structlog

from engine.db.models import db

log = structlog.get_logger("hookline.ratelimit")
T = TypeVar("T")


class Refiller(Generic[T]):
    """Runs `work(jobs)` on a daemon thread for every job asked of it, a batch at a time.

    The thread starts on the first `ask` in a process, so a process that never
    limits has none, and a fork before it (gunicorn's) leaves no half-copied
    thread behind. With `threaded=False` nothing runs until `run_pending`,
    on the caller's thread: a test steps it. `connection` opens the database
    for one batch; by default a pooled connection of `engine.db.models.db`.
    """

    def __init__(
        self,
        work: Callable[[list[T]], None],
        fail: Callable[[list[T]], None],
        *,
        threaded: bool = True,
        connection: Callable[[], AbstractContextManager[Any]] | None = None,
        name: str = "rate-limit-refill",
    ) -> None:
        self._work = work
        self._fail = fail
        self.threaded = threaded
        self._connection = connection or db.connection_context
        self._name = name
        self._queue: queue.SimpleQueue[list[T] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._owner: int | None = None  # the process whose thread runs, if any
        self._starting = threading.Lock()
        self._closed = False

    def ask(self, jobs: list[T]) -> None:
        """Have `jobs` done soon; once closed, they fail at once (the blocking way is left)."""
        if self._closed:
            self._fail(jobs)
            return
        if self.threaded and self._owner != os.getpid():
            self._start()
        self._queue.put(jobs)

    def run_pending(self) -> None:
        """Do what has been asked so far, here: for a refiller built with `threaded=False`."""
        batch, _ = _take(self._queue, block=False)
        if batch:
            self._settle(batch)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread once it has done what was asked before; what comes later fails."""
        with self._starting:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None and self._owner == os.getpid():
            self._queue.put(None)
            thread.join(timeout_s)
        left, _ = _take(self._queue, block=False)
        if left:
            self._fail(left)

    def alive(self) -> bool:
        """Whether this process's thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._owner == os.getpid()

    def _start(self) -> None:
        with self._starting:
            if self._owner == os.getpid() or self._closed:
                return
            self._queue = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._run, args=(self._queue,), name=self._name, daemon=True
            )
            thread.start()
            self._thread, self._owner = thread, os.getpid()

    def _run(self, queued: queue.SimpleQueue[list[T] | None]) -> None:
        while True:
            batch, stop = _take(queued, block=True)
            if batch:
                try:
                    self._settle(batch)
                except Exception:  # `fail` itself failed: a bug, logged; the thread goes on
                    log.exception("rate_limit_refiller_error", jobs=len(batch))
            if stop:
                return

    def _settle(self, batch: list[T]) -> None:
        try:
            with self._connection():
                self._work(batch)
        except Exception as exc:  # noqa: BLE001 - no connection, or a bug: the blocking way
            log.warning(
                "rate_limit_refill_failed", jobs=len(batch), error=f"{type(exc).__name__}: {exc}"
            )
            self._fail(batch)


def _take(queued: queue.SimpleQueue[list[T] | None], *, block: bool) -> tuple[list[T], bool]:
    """Everything queued (waiting for a first item if `block`); and whether a stop was among it."""
    batch: list[T] = []
    stop = False
    try:
        item = queued.get() if block else queued.get_nowait()
        while True:
            if item is None:
                stop = True
            else:
                batch.extend(item)
            item = queued.get_nowait()
    except queue.Empty:
        pass
    return batch, stop
