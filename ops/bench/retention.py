"""The retention scenario (issue 18 §1): drop a day of a 30-day history while traffic runs.

`--retention-attempts` attempts (10,000,000 in full) over the last 30 days are
generated server-side (`INSERT … SELECT generate_series`, ids spelled as the
product's time-sorted ids, one event and one delivery per three attempts)
into the daily partitions. Then, while a tenant sends `--noisy-rate` events/s
to a fast endpoint for `--noisy-window-s` seconds, the bench drops the oldest
day (`engine.retention.days.drop_day`, as the scheduler does) and runs batched
purges of a tenant kept 20 days (`engine.retention.Retention`). Figures: the
drop's time, the rows it removed, the batched deletes' rows, and the sending
tenant's event-to-first-attempt lag, p50 and p99.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from typing import Any

from engine.db import partitions
from engine.db.connect import bind
from engine.db.models import Tenant
from engine.retention import Retention
from engine.retention import days as retention_days
from engine.settings import Settings
from ops.bench import scenarios
from ops.bench.context import Context, wait_until

HISTORY_DAYS = 30
ATTEMPTS_PER_DELIVERY = 3
# Crockford base32, and the SQL that spells a 48-bit millisecond time in its 10 characters.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME = " || ".join(
    f"substr('{_ALPHABET}', (((ms >> {shift}) & 31)::int) + 1, 1)" for shift in range(45, -1, -5)
)


def _id(prefix: str, salt: str) -> str:
    """SQL for an id at `ms` whose random part is 16 hex digits of md5(n, salt)."""
    return f"'{prefix}_' || {_TIME} || upper(substr(md5(n::text || '{salt}'), 1, 16))"


def generate(ctx: Context, tenant: str, endpoint: str, attempts: int) -> float:
    """The history, spread evenly over the last 30 days; answer the seconds it took."""
    started = time.monotonic()
    deliveries = max(1, attempts // ATTEMPTS_PER_DELIVERY)
    now_ms = int(time.time() * 1000)
    # Days 0 to 29 back: the oldest is not yet past the scheduler's own 30-day retention, so
    # only the bench drops it.
    span = (HISTORY_DAYS - 1) * 86_400_000 + now_ms % 86_400_000 - 3_600_000
    base = (
        f"SELECT n, {now_ms} - 3600000 - (n::bigint * {span} / {deliveries}) AS ms"
        f" FROM generate_series(1, {deliveries}) AS n"
    )
    at = "to_timestamp(ms / 1000.0) AT TIME ZONE 'UTC'"
    ctx.pg.execute(
        "INSERT INTO event (id, tenant_id, event_type, payload, created_at)"
        f" SELECT {_id('evt', 'e')}, %s, 'order.paid', '{{}}', {at} FROM ({base}) AS s",
        [tenant],
    )
    ctx.pg.execute("DELETE FROM event_fan_out")  # history: fanned out long ago
    ctx.pg.execute(
        "INSERT INTO delivery (id, tenant_id, event_id, endpoint_id, event_type, status,"
        " attempts, event_created_at, created_at, updated_at)"
        f" SELECT {_id('dlv', 'd')}, %s, {_id('evt', 'e')}, %s, 'order.paid', 'succeeded',"
        f" {ATTEMPTS_PER_DELIVERY}, {at}, {at}, {at} FROM ({base}) AS s",
        [tenant, endpoint],
    )
    for number in range(1, ATTEMPTS_PER_DELIVERY + 1):
        ctx.pg.execute(
            "INSERT INTO attempt (id, tenant_id, delivery_id, number, started_at, duration_ms,"
            f" outcome) SELECT {_id('att', f'a{number}')}, %s, {_id('dlv', 'd')}, {number},"
            f" {at}, 1.0, 'success' FROM ({base}) AS s",
            [tenant],
        )
    ctx.pg.execute("VACUUM (ANALYZE) event, delivery, attempt")
    return time.monotonic() - started


def one_run(ctx: Context) -> dict[str, Any]:
    """Generate the history, then drop and purge under traffic; answer the figures."""
    args = ctx.args
    history, history_key = ctx.tenant("retention-history")
    endpoint = ctx.api.endpoint(history_key, f"http://127.0.0.1:{ctx.ports[0]}/ok/history")
    database = bind(Settings(database_url=ctx.pg_url))
    today = dt.datetime.now(dt.UTC).date()
    with database.connection_context():
        partitions.create_days(
            database, [today - dt.timedelta(days=n) for n in range(HISTORY_DAYS + 1)]
        )
    generated_s = generate(ctx, history, endpoint, args.retention_attempts)
    live, live_key = ctx.tenant("retention-live")
    ctx.api.endpoint(live_key, f"http://127.0.0.1:{ctx.ports[1 % len(ctx.ports)]}/ok/live")
    purged = {"rows": 0, "drop_s": 0.0, "dropped_rows": 0}
    purger = threading.Thread(target=_purge, args=(database, history, purged), daemon=True)
    purger.start()
    window = scenarios.load(
        ctx,
        live_key,
        *("--connections", "8", "--rate", f"{args.noisy_rate:.3f}"),
        *("--duration", str(args.noisy_window_s)),
    )
    purger.join(timeout=600)
    expected = window["accepted"]
    wait_until(lambda: _first_attempts(ctx, live) >= expected, args.noisy_window_s, 0.25)
    p50, p99, events = _lags(ctx, live)
    # The same for the events sent while the drop ran (and the second after it), and while
    # the batched purges ran: which of the two the whole run's p99 comes from.
    drop_from, drop_to = purged["drop_window"]
    _p50, drop_p99, drop_events = _lags(ctx, live, (drop_from, drop_to + 1.0))
    _p50, purge_p99, purge_events = _lags(ctx, live, purged["purge_window"])
    found = {
        "history_attempts": args.retention_attempts,
        "generate_s": generated_s,
        "drop_day_s": purged["drop_s"],
        "drop_lock_timeouts": purged.get("lock_timeouts", 0),
        "dropped_rows": purged["dropped_rows"],
        "batch_deleted_rows": purged["rows"],
        "live_events": int(events),
        "live_p50_ms": float(p50 or 0.0),
        "live_p99_ms": float(p99 or 0.0),
        "drop_held_s": purged.get("held_s", 0.0),
        "drop_lock_tries": purged.get("lock_tries", 0),
        "live_during_drop_events": int(drop_events),
        "live_during_drop_p99_ms": float(drop_p99 or 0.0),
        "live_during_purge_events": int(purge_events),
        "live_during_purge_p99_ms": float(purge_p99 or 0.0),
    }
    print(f"retention run: {json.dumps(found)}", file=sys.stderr, flush=True)
    return found


def _purge(database: Any, tenant: str, purged: dict[str, Any]) -> None:
    """Drop the oldest day, then purge the history tenant kept 20 days, for a while."""
    time.sleep(1.0)
    with database.connection_context():
        oldest = (dt.datetime.now(dt.UTC) - dt.timedelta(days=HISTORY_DAYS - 1)).date()
        started, wall = time.monotonic(), time.time()
        for _try in range(50):  # as the scheduler's passes would, each waiting 100 ms at most
            try:
                drop = retention_days.drop_day(oldest)
                purged["dropped_rows"], purged["held_s"] = drop.rows, drop.held_s
                purged["lock_tries"] = drop.tries
                break
            except Exception as exc:
                if not retention_days.is_lock_timeout(exc):
                    raise
                purged["lock_timeouts"] = purged.get("lock_timeouts", 0) + 1
        purged["drop_s"] = time.monotonic() - started
        purged["drop_window"] = (wall, time.time())
        Tenant.update(retention_days=20).where(Tenant.id == tenant).execute()
        retention = Retention(database, default_days=HISTORY_DAYS + 5, batch=500)
        ends, wall = time.monotonic() + 5.0, time.time()
        while time.monotonic() < ends:
            purged["rows"] += retention.run_once().deleted_rows
        purged["purge_window"] = (wall, time.time())


def _lags(
    ctx: Context, tenant: str, window: tuple[float, float] | None = None
) -> tuple[float | None, float | None, int]:
    """The tenant's event-to-first-attempt lag, p50 and p99 in ms, and the events counted;
    only those created within `window` (Unix seconds), if given."""
    within = ""
    params: list[Any] = [tenant]
    if window is not None:
        within = " AND e.created_at BETWEEN (to_timestamp(%s) AT TIME ZONE 'UTC')"
        within += " AND (to_timestamp(%s) AT TIME ZONE 'UTC')"
        params += list(window)
    p50, p99, events = ctx.pg.row(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY s), count(*)"
        " FROM (SELECT extract(epoch FROM a.started_at - e.created_at) * 1000 AS s"
        "  FROM event e JOIN delivery d ON d.event_id = e.id"
        "  JOIN attempt a ON a.delivery_id = d.id AND a.number = 1"
        f"  WHERE e.tenant_id = %s{within}) AS lags",
        params,
    )
    return p50, p99, int(events)


def _first_attempts(ctx: Context, tenant: str) -> int:
    return int(
        ctx.pg.scalar("SELECT count(*) FROM attempt WHERE tenant_id = %s AND number = 1", [tenant])
    )
