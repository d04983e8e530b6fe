"""Rate limits shared by every API process: fixed one-second windows, leased in chunks.

A tenant request spends one hit (a batch, one per event) from two buckets of its
budget (`ingest` for `POST /v1/events` and `/v1/events/batch`, `management` for
every other tenant route): its credential's bucket and its tenant's. Each
bucket has one counter row per window in the database, shared by every worker
of every host.

An API process does not add one hit per request to that row. It leases hits in
chunks (`lease`: one `INSERT … ON CONFLICT DO UPDATE SET hits = hits + chunk
RETURNING hits` for all the buckets that need one) and spends them from memory
(`engine.tenancy.limiter`), leasing the next chunk in the background before the
last runs out, and the next window's first chunk in the last moments of a
window. The counter only ever grows, so the hits a lease added lie between
`hits - chunk` and `hits`; the part of them below the limit is the lease
(`granted`), the rest is nobody's. Leases therefore never add up to more than
the limit, however many processes race, and whenever they are taken (a lease
taken ahead adds to the next window's row): a limit is never exceeded. Once a
process has seen the counter reach the limit, it refuses the bucket from
memory until the window ends.

What it costs instead is under-use: hits leased but not yet spent by one
process cannot serve a request that reaches another. A lease (`chunk`) is about
1/`leases_per_s` of what the process spent in the window before, at least a
thousandth of the limit and at most 1/`leases_per_s` of it. A process holds at
most one chunk unspent: refills top a lease up to one chunk, and a chunk leased
ahead for a window the process then serves no request in is that window's one
chunk; a chunk of one hit is leased only by the request that spends it, never
ahead. So a window can close with at most `limit / leases_per_s + processes *
limit / 1000` hits leased and unspent: 5 % of the limit plus 0.1 % per API
process with the default `HOOKLINE_RATE_LIMIT_LEASES_PER_S` of 20, and none at
all for a limit under `2 * leases_per_s` (40 a second by default), where every
lease is one hit. A process at a steady rate leases a bucket about
`leases_per_s` to twice that many times a second (a refill tops up from under
half a chunk), whatever the rate.

Refused requests count too: a request refused by one bucket still spends its
hit from the other, so a key that keeps hammering past its own limit spends its
tenant's budget as well, and stays refused until the window ends. Windows are
fixed, so a burst that straddles a boundary can fit twice a limit into one
second, never more than one limit into a window. Hosts take the window from
their own clock, so keep clocks in sync (NTP). `sweep` deletes finished
windows, which bounds the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.db.models import RateLimitWindow, db
from engine.settings import Settings

INGEST = "ingest"
MANAGEMENT = "management"
BUDGETS = (INGEST, MANAGEMENT)
WINDOW_S = 1
# Keys of a tenant's `rate_limits`; each overrides the setting `rate_limit_<key>`.
OVERRIDES = ("ingest_per_s", "management_per_s", "tenant_ingest_per_s", "tenant_management_per_s")
# A lease is at least this share of the limit, so a process that starts cold
# (nothing spent the window before) still leases a busy bucket in chunks.
LEASE_FLOOR_DIVISOR = 1000


@dataclass(frozen=True)
class Decision:
    """Whether one request may pass, and where the tightest of its buckets stands."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the window ends and the count starts over


def limits(budget: str, settings: Settings, overrides: Mapping[str, int] | None) -> tuple[int, int]:
    """Requests per second for one budget: (per credential, per tenant); 0 means no limit."""
    values = {key: int(getattr(settings, "rate_limit_" + key)) for key in OVERRIDES}
    chosen = (overrides or {}).items()
    values.update({k: int(v) for k, v in chosen if k in OVERRIDES and v is not None})
    return values[f"{budget}_per_s"], values[f"tenant_{budget}_per_s"]


def window_start(now_s: float, window_s: int = WINDOW_S) -> int:
    """The Unix second the window holding `now_s` starts at."""
    return int(now_s // window_s) * window_s


def decide(counts: Sequence[tuple[int, int]], now_s: float, window_s: int = WINDOW_S) -> Decision:
    """Allow when every `(limit, hits)` pair is within its limit; report the tightest pair.

    `hits` already counts this request; every `limit` is positive.
    """
    allowed = all(hits <= limit for limit, hits in counts)
    limit, hits = min(counts, key=lambda pair: pair[0] - pair[1])
    reset_s = max(1, math.ceil(window_start(now_s, window_s) + window_s - now_s))
    return Decision(allowed, limit, max(0, limit - hits), reset_s)


def chunk(limit: int, counter: int, previous: int, leases_per_s: int) -> int:
    """Hits to lease for a bucket whose counter stands at `counter` (below `limit`).

    `previous` is what this process spent from the bucket in the window before.
    """
    floor = limit // LEASE_FLOOR_DIVISOR
    cap = limit // leases_per_s
    wanted = max(floor, min(cap, previous // leases_per_s))
    return max(1, min(wanted, limit - counter))


def granted(chunk: int, counter: int, limit: int) -> int:
    """The hits of a `chunk` that are the lessee's, `counter` being the count just after it."""
    return max(0, min(chunk, limit - (counter - chunk)))


def lease(chunks: Mapping[str, int], window: int) -> dict[str, int]:
    """Add each bucket's chunk to its counter in `window`, in one atomic statement; answer each.

    Raises:
        peewee.OperationalError: the database is unreachable.
    """
    mark = db.param
    values = ", ".join(f"({mark}, {mark}, {mark})" for _ in chunks)
    params: list[object] = []
    for bucket, hits in chunks.items():
        params += [bucket, window, hits]
    cursor = db.execute_sql(
        "INSERT INTO rate_limit (bucket_key, window_start, hits) VALUES "
        + values
        + " ON CONFLICT (bucket_key, window_start) DO UPDATE"
        " SET hits = rate_limit.hits + excluded.hits RETURNING bucket_key, hits",
        params,
    )
    return {str(key): int(hits) for key, hits in cursor.fetchall()}


def sweep(before: int) -> int:
    """Delete the windows that started before `before`; answer how many rows went.

    Raises:
        peewee.OperationalError: the database is unreachable.
    """
    return int(RateLimitWindow.delete().where(RateLimitWindow.window_start < before).execute())
