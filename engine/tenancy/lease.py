"""One bucket's hits as one API process holds them in a window, and the leases in flight.

`engine.tenancy.limiter` keeps a `Lease` per bucket and changes it only under
its lock: requests spend from it, leases that land add to it (`grant`), and
each window starts afresh (`roll`), adopting the chunk leased ahead for it.
It also marks the leases in flight (`Refill`, taken by `lease_all`), so that a
process never has two leases of a bucket's window in flight at once, and wakes
(`changed`) whoever waits for one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from engine.db.models import db
from engine.tenancy import ratelimit
from engine.tenancy.ratelimit import WINDOW_S


class Lease:
    """One bucket's hits as this process holds them in one window; read and change under `lock`."""

    __slots__ = (
        "ahead",
        "ahead_grant",
        "ahead_in_flight",
        "changed",
        "chunk_size",
        "counter",
        "lock",
        "previous",
        "refilling",
        "spent",
        "stalled",
        "taken",
        "window",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a lease in flight landed or failed
        self.window = -1
        self.counter = 0  # the shared counter as last seen: every process's leases
        self.taken = 0  # hits the counter granted this process in the window
        self.spent = 0  # hits of those that requests spent
        self.previous = 0  # hits spent in the window before
        self.chunk_size = 0  # the largest chunk that landed in this window
        self.refilling = 0  # the window a lease is in flight for, if any
        self.ahead = 0  # the next window, once its first chunk is asked for
        self.ahead_grant: tuple[int, int] | None = None  # that chunk and the counter after it
        self.ahead_in_flight = False
        self.stalled = False  # a refill failed: none in the background until one lands

    def roll(self, window: int, limit: int) -> None:
        """Move on to `window` (never back), adopting what was leased ahead for it."""
        if window <= self.window:
            return
        self.previous = self.spent if window == self.window + WINDOW_S else 0
        self.window, self.counter, self.taken, self.spent = window, 0, 0, 0
        self.refilling, self.chunk_size = 0, 0
        if self.ahead == window:
            if self.ahead_grant is not None:
                self.chunk_size = self.ahead_grant[0]
                self.grant(*self.ahead_grant, limit)
            elif self.ahead_in_flight:
                self.refilling = window  # requests wait for it rather than lease again
        self.ahead_grant = None

    def decidable(self, limit: int, hits: int = 1) -> bool:
        """Whether `hits` can be decided without the database: enough left, or none to lease."""
        return self.taken - self.spent >= hits or self.counter >= limit

    def spend(self, limit: int, hits: int = 1) -> int:
        """Spend `hits`, all or none; answer the hits known spent in the cluster, or `limit + 1`.

        Hits other processes leased count as spent: they may be.
        """
        if self.taken - self.spent < hits:
            return limit + 1
        self.spent += hits
        return min(self.counter, limit) - (self.taken - self.spent)

    def grant(self, chunk: int, counter: int, limit: int) -> None:
        """Keep the part of a leased `chunk` below `limit`; `counter` is the count after it."""
        self.taken += ratelimit.granted(chunk, counter, limit)
        self.counter = max(self.counter, counter)

    def land(self, window: int, chunk: int, counter: int, limit: int) -> None:
        """Take a chunk leased for `window`: this window's, the next one's (held), or stranded."""
        self.stalled = False
        if window == self.window:
            self.chunk_size = max(self.chunk_size, chunk)
            self.grant(chunk, counter, limit)
        elif window == self.ahead and window > self.window:
            self.ahead_grant = (chunk, counter)
        self.settle(window)

    def fail(self, window: int) -> None:
        """A lease for `window` will not land: none in the background until one does."""
        self.stalled = True
        self.settle(window)

    def settle(self, window: int) -> None:
        """No lease for `window` is in flight any more: wake whoever waits for it."""
        if self.refilling == window:
            self.refilling = 0
        if self.ahead == window:
            self.ahead_in_flight = False
        self.changed.notify_all()


class Refill(NamedTuple):
    """Hits to lease for one bucket in one window, and the lease they go to."""

    bucket: str
    lease: Lease
    window: int
    hits: int
    limit: int


def by_window(jobs: Iterable[Refill]) -> dict[int, list[Refill]]:
    """The refills of each window: a window's go to the database in one statement."""
    grouped: dict[int, list[Refill]] = {}
    for job in jobs:
        grouped.setdefault(job.window, []).append(job)
    return grouped


@contextlib.contextmanager
def _connected() -> Iterator[None]:
    """The thread's open connection, or a pooled one for the block only.

    A request that must lease runs without a connection of its own
    (`api.middleware.RateLimit`): it may wait for the refiller's lease first,
    and a thread waiting while it held a pooled connection could starve the
    refiller of the connection it needs (with the pool sized to the threads,
    every thread did, for the pool's whole timeout).
    """
    if not db.is_closed():
        yield
        return
    db.connect()
    try:
        yield
    finally:
        db.close()


def lease_all(
    claims: list[Refill], fail: Callable[[list[Refill]], None]
) -> list[tuple[Refill, int]]:
    """Lease every claim, one statement per window; answer each with its counter after it.

    Raises:
        peewee.OperationalError: the database is unreachable; `fail` has had every claim.
    """
    landed: list[tuple[Refill, int]] = []
    try:
        with _connected():
            for window, asked in by_window(claims).items():
                counters = ratelimit.lease({job.bucket: job.hits for job in asked}, window)
                landed += [(job, counters[job.bucket]) for job in asked]
    except BaseException:
        fail(claims)
        raise
    return landed
