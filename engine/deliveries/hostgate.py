"""A per-host limit on attempts in flight that lets waiting attempts through in arrival order.

aiohttp's connector limits connections per host too, but not fairly: a
released connection goes to whichever request asks next, and a waiter that
lost the race queues again at the back. Under sustained load some attempts to
a healthy endpoint waited seconds for a connection, and since aiohttp counts
that wait against the connect timeout, they failed as timeouts and were
retried. `HostGates` sits in front of the connector with the same limit and
hands a freed slot straight to the longest waiter, so the connector never
makes anyone wait. A rate-limited request due now (`engine.deliveries.slots`)
goes ahead of the waiters: behind a flood to the same host it would miss its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Hashable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Gate:
    __slots__ = ("busy", "waiters")

    def __init__(self) -> None:
        self.busy = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class HostGates:
    """At most `per_host` holders per key at once; waiters are let in first come, first served.

    Keys without holders or waiters are forgotten, so the map stays as small as
    the set of hosts being sent to.
    """

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._gates: dict[Hashable, _Gate] = {}

    def holders(self, key: Hashable) -> int:
        """How many hold a slot for `key` now."""
        gate = self._gates.get(key)
        return gate.busy if gate is not None else 0

    def waiting(self, key: Hashable) -> int:
        """How many wait for a slot for `key` now."""
        gate = self._gates.get(key)
        return sum(1 for w in gate.waiters if not w.done()) if gate is not None else 0

    async def acquire(self, key: Hashable, *, first: bool = False) -> None:
        """Take a slot for `key`, waiting behind those that asked first.

        `first`: ahead of every waiter (a rate-limited request due now: there are at most
        its endpoint's rate of those a second, so they cannot starve the rest).
        """
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate()
        if gate.busy < self.per_host and not gate.waiters:
            gate.busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            gate.waiters.appendleft(waiter)
        else:
            gate.waiters.append(waiter)
        try:
            await waiter  # resolved by release(), which hands its slot over
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(key)  # handed a slot, then cancelled before running: pass it on
            else:
                with contextlib.suppress(ValueError):
                    gate.waiters.remove(waiter)
            raise

    def release(self, key: Hashable) -> None:
        """Give back a slot for `key`: to the longest waiter, if any."""
        gate = self._gates[key]
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        gate.busy -= 1
        if gate.busy == 0:
            del self._gates[key]


@functools.lru_cache(maxsize=4096)
def host_key(url: str) -> tuple[str, str, int | None]:
    """What the connector pools connections by: scheme, host and port (default filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)
