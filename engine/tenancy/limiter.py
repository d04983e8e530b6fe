"""One API process's leases on the shared rate-limit counters: requests decide in memory.

`Limiter` holds, for each bucket this process serves, a `Lease`
(`engine.tenancy.lease`): the hits the shared counter granted it in the
current window, how many it has spent, and the counter as last seen
(`engine.tenancy.ratelimit` explains the counter and the bounds). A request
whose buckets all have hits left, or are known full, is decided by
`try_consume` without the database, on the caller's thread.

Leases are refilled ahead of need by one background thread per process
(`engine.tenancy.refill`), so a steady stream of requests never waits on the
database. What asks for it is a spend (`_plan`, under the lease's lock):

- **Low water.** A spend that leaves a lease with less than half a chunk
  (`ratelimit.chunk`) asks for the rest of it, while the counter is below the
  limit and no lease of the bucket is in flight. The lease is topped up to one
  chunk, never more, so a process holds no more unspent than it did before.
- **The next window.** A spend in a window's last 1/`leases_per_s` seconds
  asks for the next window's first chunk, sized from what this window spent.
  It is held on the lease, and `Lease.roll` adopts it when the window turns;
  one the process never uses is stranded, as its own lease would have been.
- **The sweep** of finished windows runs there too, asked by a window's first request.

A chunk of one hit is never leased in the background: a limit under twice
`leases_per_s` is still leased by the request that spends it, and stays exact.
When a lease is empty anyway (the first request of a bucket, a window the
process was idle at the end of, a refill that failed), `try_consume` answers
`NEEDS_DATABASE` and `consume`, where blocking is fine, leases for every
bucket of the request that lacks hits in one statement; first it waits for
the bucket's lease in flight, if any, so a process never has two leases of a
bucket's window in flight. A refill that fails is logged, and its bucket
leases this blocking way until one lands. The API's composition root builds
one `Limiter` per process, hands it to the middleware, and closes it on the
way out.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import structlog

from engine.settings import Settings
from engine.tenancy import ratelimit
from engine.tenancy.credentials import Principal
from engine.tenancy.lease import Lease, Refill, by_window, lease_all
from engine.tenancy.ratelimit import WINDOW_S, Decision, decide, window_start
from engine.tenancy.refill import Refiller

log = structlog.get_logger("hookline.ratelimit")

# A lease is refilled once less than 1/this of its chunk is left unspent.
LOW_WATER_DIVISOR = 2
# The smallest chunk leased in the background: a chunk of one hit is leased by its spender.
BACKGROUND_MIN_HITS = 2
# Seconds a request waits on a bucket's lease in flight before it looks again.
WAIT_S = 1.0


class Deferred(enum.Enum):
    """`try_consume` cannot decide from memory: call `consume` where blocking is fine."""

    NEEDS_DATABASE = "needs the database"


NEEDS_DATABASE = Deferred.NEEDS_DATABASE


class Sweep(NamedTuple):
    """Delete the counters of the windows that started before `before`."""

    before: int


Job = Refill | Sweep
# The refiller's work and its fallback, each handed a batch of jobs.
Work = Callable[[list[Job]], None]


class Limiter:
    """A process's leases on each bucket it serves, refilled in the background; thread-safe.

    `refiller` builds the background worker from the limiter's work and its
    fallback (`engine.tenancy.refill.Refiller`); a test may build one it steps.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        refiller: Callable[[Work, Work], Refiller[Job]] = Refiller,
    ) -> None:
        self.settings = settings
        self.leases_per_s = settings.rate_limit_leases_per_s
        self.ahead_s = WINDOW_S / self.leases_per_s
        self.swept_before = 0
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self.refiller = refiller(self._refill, self._fail)

    def close(self) -> None:
        """Stop the background thread; requests after this lease the blocking way."""
        self.refiller.close()

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
        if not buckets:
            return None
        window = window_start(now)
        self._sweep_soon(window)
        order = sorted(buckets)
        held: list[Lease] = []
        asks: list[Job] = []
        try:
            for bucket in order:
                lease = self._leases.get(bucket)
                if lease is None or not lease.lock.acquire(blocking=False):
                    return NEEDS_DATABASE
                held.append(lease)
                lease.roll(window, buckets[bucket])
                if not lease.decidable(buckets[bucket], hits):
                    return NEEDS_DATABASE
            counts = []
            for bucket, lease in zip(order, held, strict=True):
                limit = buckets[bucket]
                counts.append((limit, lease.spend(limit, hits)))
                self._plan(bucket, lease, limit, now, asks)
        finally:
            for lease in held:
                lease.lock.release()
        if asks:
            self.refiller.ask(asks)
        return decide(counts, now)

    def consume(self, buckets: Mapping[str, int], now: float, hits: int = 1) -> Decision | None:
        """Spend `hits` of every bucket, leasing where this process has too few left.

        Raises:
            peewee.OperationalError: the database is unreachable.
        """
        if not buckets:
            return None
        window = window_start(now)
        self._sweep_soon(window)
        counts: dict[str, tuple[int, int]] = {}
        asks: list[Job] = []
        pending = sorted(buckets)
        while pending:
            claims: list[Refill] = []
            for bucket in pending:
                limit, lease = buckets[bucket], self._lease(bucket)
                with lease.lock:
                    claim = self._claim(bucket, lease, window, limit, hits)
                    if claim is None:
                        counts[bucket] = (limit, lease.spend(limit, hits))
                        self._plan(bucket, lease, limit, now, asks)
                    else:
                        claims.append(claim)
            pending = []
            for claim, counter in lease_all(claims, self._fail):
                lease, limit = claim.lease, claim.limit
                with lease.lock:
                    lease.land(claim.window, claim.hits, counter, limit)
                    if not lease.decidable(limit, hits):
                        pending.append(claim.bucket)  # others spent what it had meanwhile
                        continue
                    counts[claim.bucket] = (limit, lease.spend(limit, hits))
                    self._plan(claim.bucket, lease, limit, now, asks)
        if asks:
            self.refiller.ask(asks)
        return decide([counts[bucket] for bucket in sorted(buckets)], now)

    def _lease(self, bucket: str) -> Lease:
        with self._lock:
            return self._leases.setdefault(bucket, Lease())

    def _claim(
        self, bucket: str, lease: Lease, window: int, limit: int, hits: int
    ) -> Refill | None:
        """None when `hits` can be decided now; else what this thread must lease (under the lock).

        Waits while a lease of the bucket's window is in flight: it may bring enough.
        """
        lease.roll(window, limit)
        while not lease.decidable(limit, hits):
            if not lease.refilling:
                short = hits - (lease.taken - lease.spent)
                size = ratelimit.chunk(limit, lease.counter, lease.previous, self.leases_per_s)
                lease.refilling = lease.window
                return Refill(bucket, lease, lease.window, max(short, size), limit)
            lease.changed.wait(WAIT_S)
            lease.roll(window, limit)
        return None

    def _plan(self, bucket: str, lease: Lease, limit: int, now: float, asks: list[Job]) -> None:
        """After a spend: ask for what the lease will soon lack, this window's and the next's.

        None while a refill of the bucket has failed: the next lease is the blocking way's.
        """
        unspent = lease.taken - lease.spent
        # Most spends stop at the first test: a chunk only shrinks in a window (towards the limit).
        busy = lease.refilling or lease.stalled
        if unspent * LOW_WATER_DIVISOR < lease.chunk_size and not busy:
            size = ratelimit.chunk(limit, lease.counter, lease.previous, self.leases_per_s)
            low = unspent * LOW_WATER_DIVISOR < size
            if low and size >= BACKGROUND_MIN_HITS and lease.counter < limit:
                lease.refilling = lease.window
                asks.append(Refill(bucket, lease, lease.window, size - unspent, limit))
        following = lease.window + WINDOW_S
        if now < following - self.ahead_s or lease.ahead == following or lease.stalled:
            return
        size = ratelimit.chunk(limit, 0, lease.spent, self.leases_per_s)
        if lease.spent and size >= BACKGROUND_MIN_HITS:
            lease.ahead, lease.ahead_grant, lease.ahead_in_flight = following, None, True
            asks.append(Refill(bucket, lease, following, size, limit))

    def _sweep_soon(self, window: int) -> None:
        # Once per window per process: a cheap delete a second, however busy the API.
        before = window - WINDOW_S
        if before <= self.swept_before:
            return
        with self._lock:
            if before <= self.swept_before:
                return
            self.swept_before = before
        self.refiller.ask([Sweep(before)])

    def _refill(self, jobs: list[Job]) -> None:
        """Lease what `jobs` ask, one statement per window, then sweep: the refiller's work."""
        refills = [job for job in jobs if isinstance(job, Refill)]
        for window, asked in by_window(refills).items():
            try:
                landed = lease_all(asked, self._fail)
            except Exception as exc:  # noqa: BLE001 - those buckets lease the blocking way
                log.warning(
                    "rate_limit_refill_failed",
                    window=window,
                    buckets=len(asked),
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            for job, counter in landed:
                with job.lease.lock:
                    job.lease.land(job.window, job.hits, counter, job.limit)
        sweeps = [job.before for job in jobs if isinstance(job, Sweep)]
        if sweeps:
            self._sweep(max(sweeps))

    def _fail(self, jobs: Iterable[Job]) -> None:
        """Leases that will not land: their buckets go the blocking way (`consume`)."""
        for job in jobs:
            if isinstance(job, Refill):
                with job.lease.lock:
                    job.lease.fail(job.window)

    def _sweep(self, before: int) -> None:
        try:
            ratelimit.sweep(before)
        except Exception as exc:  # noqa: BLE001 - the next window's sweep takes these too
            log.warning("rate_limit_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            # A lease dropped while a request uses it only strands its hits: under-use, never more.
            self._leases = {
                bucket: lease
                for bucket, lease in self._leases.items()
                if lease.window >= before or lease.window < 0
            }
