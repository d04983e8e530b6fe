"""Rate limits shared by every API process: fixed one-second windows counted in the database.

A tenant request spends one hit (a batch, one per event) from two buckets of
its budget (`ingest` for `POST /v1/events` and `/v1/events/batch`, `management`
for every other tenant route): its credential's bucket and its tenant's. One
statement, `INSERT … ON CONFLICT DO UPDATE SET hits = hits + n RETURNING hits`,
adds both hits atomically, so every worker of every host counts against the same rows
and a limit holds however many processes serve the API. The decision is a pure
function of the counts (`decide`).

Refused requests count too: a client that keeps hammering stays refused until
the window ends. Windows are fixed, so a burst that straddles a boundary can
fit twice a limit into one second, never more than one limit into a window.
Hosts take the window from their own clock, so keep clocks in sync (NTP).
`sweep` deletes finished windows, which bounds the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.db.models import RateLimitWindow, db
from engine.settings import Settings
from engine.tenancy.credentials import Principal

INGEST = "ingest"
MANAGEMENT = "management"
BUDGETS = (INGEST, MANAGEMENT)
WINDOW_S = 1
# Keys of a tenant's `rate_limits`; each overrides the setting `rate_limit_<key>`.
OVERRIDES = ("ingest_per_s", "management_per_s", "tenant_ingest_per_s", "tenant_management_per_s")


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


def hit(buckets: Sequence[str], window: int, hits: int = 1) -> dict[str, int]:
    """Add `hits` to each bucket in `window`, in one atomic statement; answer every count.

    Raises:
        peewee.OperationalError: the database is unreachable.
    """
    mark = db.param
    values = ", ".join(f"({mark}, {mark}, {mark})" for _ in buckets)
    params: list[object] = []
    for bucket in buckets:
        params += [bucket, window, hits]
    cursor = db.execute_sql(
        "INSERT INTO rate_limit (bucket_key, window_start, hits) VALUES "
        + values
        + " ON CONFLICT (bucket_key, window_start) DO UPDATE"
        " SET hits = rate_limit.hits + excluded.hits"
        " RETURNING bucket_key, hits",
        params,
    )
    return {str(key): int(hits) for key, hits in cursor.fetchall()}


def consume(
    principal: Principal, budget: str, settings: Settings, now_s: float, hits: int = 1
) -> Decision | None:
    """Spend `hits` of `budget` (a request, or a batch's events) for the principal.

    None when no limit applies to it.
    """
    per_credential, per_tenant = limits(budget, settings, principal.rate_limits)
    buckets = {
        f"{budget}:key:{principal.credential_id}": per_credential,
        f"{budget}:tenant:{principal.tenant_id}": per_tenant,
    }
    buckets = {bucket: limit for bucket, limit in buckets.items() if limit > 0}
    if not buckets:
        return None
    counts = hit(list(buckets), window_start(now_s), hits)
    return decide([(limit, counts[bucket]) for bucket, limit in buckets.items()], now_s)


def sweep(before: int) -> int:
    """Delete the windows that started before `before`; answer how many rows went."""
    return int(RateLimitWindow.delete().where(RateLimitWindow.window_start < before).execute())
