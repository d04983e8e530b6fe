"""The noisy-neighbour scenario (issue 17 §4): one tenant's flood against another's lag.

Tenant A floods `--noisy-deliveries` events (batch ingest, one endpoint) to a
receiver path that takes 200 ms per request (`/slow/200/...`, asyncio on the
bench's receiver: any number at once). Then, while A's backlog is still large,
tenant B sends `--noisy-rate` events/s for `--noisy-window-s` seconds to a
fast endpoint on another port (another host to the delivery client). The
figure is B's event-to-first-attempt lag, p50 and p99, from the attempt rows.
B's events without a first attempt by `--noisy-window-s` after the window
count at the lag they had then (a lower bound), and are reported apart. A
need not drain: its open deliveries and unfanned events are cancelled at the
end, its queued messages purged.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ops.bench import scenarios
from ops.bench.context import Context, wait_until
from ops.bench.services import purge_queues

SLOW_MS = 200
FLOOD_BATCH = 100  # events per batch request of A's flood


def one_run(ctx: Context) -> dict[str, Any]:
    """One flood and one measured window of B; answer B's lag and A's backlog around it."""
    args = ctx.args
    tenant_a, key_a = ctx.tenant("noisy-a")
    tenant_b, key_b = ctx.tenant("noisy-b")
    ctx.api.endpoint(key_a, f"http://127.0.0.1:{ctx.ports[0]}/slow/{SLOW_MS}/a")
    ctx.api.endpoint(key_b, f"http://127.0.0.1:{ctx.ports[1 % len(ctx.ports)]}/ok/b")
    requests = max(1, args.noisy_deliveries // FLOOD_BATCH)
    flood = scenarios.load(
        ctx,
        key_a,
        *("--connections", str(args.batch_connections), "--count", str(requests)),
        *("--batch", str(FLOOD_BATCH)),
    )
    if flood["events_accepted"] < requests * FLOOD_BATCH:
        raise RuntimeError(f"noisy-neighbour: A's flood was not all accepted: {flood['statuses']}")
    backlog_before = _backlog(ctx, tenant_a)
    slow_before, window_started = _slow_requests(ctx), time.monotonic()
    window = scenarios.load(
        ctx,
        key_b,
        *("--connections", "8", "--rate", f"{args.noisy_rate:.3f}"),
        *("--duration", str(args.noisy_window_s)),
    )
    backlog_after = _backlog(ctx, tenant_a)
    a_per_s = (_slow_requests(ctx) - slow_before) / (time.monotonic() - window_started)
    expected = window["accepted"]
    wait_until(lambda: _first_attempts(ctx, tenant_b) >= expected, args.noisy_window_s, 0.25)
    p50, p99, worst, events, attempted = ctx.pg.row(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY s), max(s), count(*), count(a)"
        " FROM (SELECT extract(epoch FROM coalesce(a.started_at, now()) - e.created_at) * 1000"
        "  AS s, a.id AS a"
        "  FROM event e LEFT JOIN delivery d ON d.event_id = e.id"
        "  LEFT JOIN attempt a ON a.delivery_id = d.id AND a.number = 1"
        "  WHERE e.tenant_id = %s) AS lags",
        [tenant_b],
    )
    a_timeouts = ctx.pg.scalar(
        "SELECT count(*) FROM attempt WHERE tenant_id = %s AND error_class = 'timeout'",
        [tenant_a],
    )
    found = {
        "a_events": flood["events_accepted"],
        "a_flood_s": flood["elapsed_s"],
        "a_open_at_window_start": backlog_before,
        "a_open_at_window_end": backlog_after,
        "a_requests_per_s": a_per_s,
        "a_timed_out_attempts": int(a_timeouts),
        "b_events": int(events),
        "b_offered_per_s": args.noisy_rate,
        "b_without_first_attempt": int(events) - int(attempted),
        "b_p50_ms": float(p50 or 0.0),
        "b_p99_ms": float(p99 or 0.0),
        "b_max_ms": float(worst or 0.0),
    }
    print(f"noisy-neighbour run: {json.dumps(found)}", file=sys.stderr, flush=True)
    _stop_flood(ctx, tenant_a)
    return found


def _backlog(ctx: Context, tenant: str) -> int:
    """A's work not yet attempted: open deliveries and events not yet fanned out."""
    deliveries = ctx.pg.scalar(
        f"SELECT count(*) FROM delivery WHERE tenant_id = %s AND status IN {scenarios.OPEN_STATES}",
        [tenant],
    )
    unfanned = ctx.pg.scalar(
        "SELECT count(*) FROM event_fan_out f JOIN event e ON e.id = f.event_id"
        " WHERE e.tenant_id = %s",
        [tenant],
    )
    return int(deliveries) + int(unfanned)


def _slow_requests(ctx: Context) -> int:
    """Requests A's slow receiver path has had so far."""
    return int(ctx.receiver("/_stats")["counts"].get("slow", 0))


def _first_attempts(ctx: Context, tenant: str) -> int:
    return int(
        ctx.pg.scalar(
            "SELECT count(*) FROM attempt WHERE tenant_id = %s AND number = 1",
            [tenant],
        )
    )


def _stop_flood(ctx: Context, tenant: str) -> None:
    """End A's flood: no more fan-outs, its messages purged, its open deliveries cancelled."""
    for _ in range(3):
        # Skipping the rows a worker's fan-out holds (it deletes them too): no deadlock.
        while ctx.pg.execute(
            "DELETE FROM event_fan_out WHERE event_id IN"
            " (SELECT f.event_id FROM event_fan_out f JOIN event e ON e.id = f.event_id"
            "  WHERE e.tenant_id = %s ORDER BY f.event_id LIMIT 5000 FOR UPDATE OF f SKIP LOCKED)",
            [tenant],
        ):
            pass
        purge_queues(ctx.amqp_url, *scenarios.QUEUES)
        scenarios.cancel(ctx, tenant)
        time.sleep(1.0)
