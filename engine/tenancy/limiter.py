"""One API process's leases on the shared rate-limit counters: most requests decide in memory.

`Limiter` holds, for each bucket this process serves, a `Lease`: the hits the
shared counter granted it in the current window, how many it has spent, and
the counter as last seen (`engine.tenancy.ratelimit` explains the counter and
the bounds). A request whose buckets all have hits left, or are known full, is
decided by `try_consume` without the database, on the caller's thread. Only
when a lease is spent does `consume` lease again: one statement for every
bucket of the request that needs it, holding only those buckets' locks, so a
process has at most one lease in flight per bucket. The API's composition root
builds one `Limiter` per process and hands it to the middleware.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping

from engine.settings import Settings
from engine.tenancy import ratelimit
from engine.tenancy.credentials import Principal
from engine.tenancy.ratelimit import WINDOW_S, Decision, decide, window_start


class Deferred(enum.Enum):
    """`try_consume` cannot decide from memory: call `consume` where blocking is fine."""

    NEEDS_DATABASE = "needs the database"


NEEDS_DATABASE = Deferred.NEEDS_DATABASE


class Lease:
    """One bucket's hits as this process holds them in one window; read and change under `lock`."""

    __slots__ = ("counter", "lock", "previous", "spent", "taken", "window")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window = -1
        self.counter = 0  # the shared counter as last seen: every process's leases
        self.taken = 0  # hits the counter granted this process in the window
        self.spent = 0  # hits of those that requests spent
        self.previous = 0  # hits spent in the window before

    def roll(self, window: int) -> None:
        """Start `window` afresh, remembering what the one before it spent."""
        if window != self.window:
            self.previous = self.spent if window == self.window + WINDOW_S else 0
            self.window, self.counter, self.taken, self.spent = window, 0, 0, 0

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


class Limiter:
    """A process's leases on each bucket it serves, and the sweep of old windows, thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.leases_per_s = settings.rate_limit_leases_per_s
        self.swept_before = 0
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def buckets(self, principal: Principal, budget: str) -> dict[str, int]:
        """The principal's limited buckets for `budget`, each with its limit per window."""
        per_credential, per_tenant = ratelimit.limits(budget, self.settings, principal.rate_limits)
        found: dict[str, int] = {}
        if per_credential > 0:
            found[f"{budget}:key:{principal.credential_id}"] = per_credential
        if per_tenant > 0:
            found[f"{budget}:tenant:{principal.tenant_id}"] = per_tenant
        return found

    def try_consume(
        self, buckets: Mapping[str, int], now: float, hits: int = 1
    ) -> Decision | Deferred | None:
        """Spend `hits` of every bucket from memory, never blocking; None: nothing is limited."""
        if self._sweep_due(now):
            return NEEDS_DATABASE
        if not buckets:
            return None
        window = window_start(now)
        order = sorted(buckets)
        held: list[Lease] = []
        try:
            for bucket in order:
                lease = self._leases.get(bucket)
                if lease is None or not lease.lock.acquire(blocking=False):
                    return NEEDS_DATABASE
                held.append(lease)
                lease.roll(window)
                if not lease.decidable(buckets[bucket], hits):
                    return NEEDS_DATABASE
            counts = [
                (buckets[b], lease.spend(buckets[b], hits))
                for b, lease in zip(order, held, strict=True)
            ]
        finally:
            for lease in held:
                lease.lock.release()
        return decide(counts, now)

    def consume(self, buckets: Mapping[str, int], now: float, hits: int = 1) -> Decision | None:
        """Spend `hits` of every bucket, leasing where this process has too few left.

        Raises:
            peewee.OperationalError: the database is unreachable.
        """
        self._sweep(now)
        if not buckets:
            return None
        window = window_start(now)
        counts: dict[str, tuple[int, int]] = {}
        wanted: dict[str, int] = {}
        held: dict[str, Lease] = {}
        try:
            # Sorted, as `try_consume` takes them: two requests never wait on each other's locks.
            for bucket in sorted(buckets):
                limit, lease = buckets[bucket], self._lease(bucket)
                lease.lock.acquire()
                lease.roll(window)
                if lease.decidable(limit, hits):
                    counts[bucket] = (limit, lease.spend(limit, hits))
                    lease.lock.release()
                    continue
                held[bucket] = lease
                short = hits - (lease.taken - lease.spent)
                wanted[bucket] = max(
                    short, ratelimit.chunk(limit, lease.counter, lease.previous, self.leases_per_s)
                )
            if wanted:
                counters = ratelimit.lease(wanted, window)
                for bucket, lease in held.items():
                    limit = buckets[bucket]
                    lease.grant(wanted[bucket], counters[bucket], limit)
                    counts[bucket] = (limit, lease.spend(limit, hits))
        finally:
            for lease in held.values():
                lease.lock.release()
        return decide([counts[bucket] for bucket in sorted(buckets)], now)

    def _lease(self, bucket: str) -> Lease:
        with self._lock:
            return self._leases.setdefault(bucket, Lease())

    def _sweep_due(self, now: float) -> bool:
        return window_start(now) - WINDOW_S > self.swept_before

    def _sweep(self, now: float) -> None:
        # Once per window per process: a cheap delete a second, however busy the API.
        if not self._sweep_due(now):
            return
        before = window_start(now) - WINDOW_S
        self.swept_before = before
        ratelimit.sweep(before)
        with self._lock:
            # A lease dropped while a request uses it only strands its hits: under-use, never more.
            self._leases = {b: lease for b, lease in self._leases.items() if lease.window >= before}
