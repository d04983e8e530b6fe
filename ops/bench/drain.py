"""The drain: N x M deliveries accepted while the worker is stopped, then the worker let loose.

This is the naive baseline's own shape (its messages are all enqueued before
its worker starts), so the ratio of the two is the head-to-head of the
delivery engines themselves: no ingest, no producer, in the clock.
"""

from __future__ import annotations

import time
from typing import Any

from ops.bench.context import Context, CpuMeter, RssSampler, wait_until
from ops.bench.scenarios import ROLES, load


def one_run(ctx: Context, deliveries: int, fanout: int) -> dict[str, Any]:
    """Stop the worker, accept the events, start it; answer the rate it drained them at.

    The rate is taken as the naive baseline's is: the deliveries after the
    first recorded, over the time from the first recorded to the last. The rate
    from the worker's start (its start-up included) is reported beside it.
    """
    args = ctx.args
    events = max(1, deliveries // fanout)
    tenant, key = ctx.tenant("drain")
    ctx.endpoints(key, fanout)
    ctx.processes.stop("worker")
    result = load(ctx, key, "--connections", str(args.connections), "--count", str(events))
    accepted = result["events_accepted"]
    if accepted < events:
        raise RuntimeError(f"drain: {accepted} of {events} events accepted: {result['statuses']}")
    expected = events * fanout
    started = time.time()
    ctx.processes.role("worker")
    cap = args.scenario_cap_s
    with RssSampler(ctx.processes.pid("worker")) as rss:
        # CPU is counted once the worker has started up, as the naive worker's is.
        wait_until(lambda: _succeeded(ctx, tenant)[0] > 0, cap, 0.05)
        with CpuMeter(ctx, *ROLES, "receiver") as cpu:
            before = _succeeded(ctx, tenant)[0]
            done = wait_until(lambda: _succeeded(ctx, tenant)[0] >= expected, cap, 0.2)
    count, first, last = _succeeded(ctx, tenant)
    if not done:
        raise RuntimeError(f"drain: {count} of {expected} deliveries in {args.scenario_cap_s}s")
    return {
        "fanout": fanout,
        "events": events,
        "deliveries": count,
        "elapsed_s": last - first,
        "deliveries_per_s": max(count - 1, 0) / max(last - first, 1e-6),
        "from_start_per_s": count / max(last - started, 1e-6),
        "worker_rss_max_total_mib": rss.max_total_kib / 1024,
        **cpu.per_unit(count - before),
    }


def _succeeded(ctx: Context, tenant: str) -> tuple[int, float, float]:
    count, first, last = ctx.pg.row(
        "SELECT count(*), extract(epoch FROM min(updated_at)), extract(epoch FROM max(updated_at))"
        " FROM delivery WHERE tenant_id = %s AND status = 'succeeded'",
        [tenant],
    )
    return int(count), float(first or 0.0), float(last or 0.0)
