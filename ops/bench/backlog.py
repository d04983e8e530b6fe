"""The backlog: a million scheduled retries in the table, worker RSS, scheduler dispatch rate."""

from __future__ import annotations

import math
import time
from typing import Any

from ops.bench import options
from ops.bench.context import Context, CpuMeter, wait_until
from ops.bench.services import purge_queues

UTC_NOW = "(now() AT TIME ZONE 'utc')"


def insert(ctx: Context, rows: int) -> dict[str, Any]:
    """Bulk-insert `rows` scheduled retries, due 30 days from now, for a tenant of their own."""
    tenant, key = ctx.tenant("backlog")
    template = ctx.endpoints(key, 1)[0]
    side = math.ceil(math.sqrt(rows))
    started = time.monotonic()
    ctx.pg.execute(
        "INSERT INTO endpoint (id, tenant_id, url, event_types, headers, metadata, secret,"
        " status, created_at, updated_at)"
        " SELECT 'ep_backlog_' || g, tenant_id, url, event_types, headers, metadata, secret,"
        f" 'active', {UTC_NOW}, {UTC_NOW}"
        " FROM endpoint, generate_series(1, %s) AS g WHERE id = %s",
        [side, template],
    )
    ctx.pg.execute(
        "INSERT INTO event (id, tenant_id, event_type, payload, created_at)"
        " SELECT 'evt_backlog_' || g, %s, 'bench.backlog', '{\"n\":1}',"
        f" {UTC_NOW} FROM generate_series(1, %s) AS g",
        [tenant, side],
    )
    # Their deliveries are made below: nothing is left to fan out.
    ctx.pg.execute("DELETE FROM event_fan_out WHERE event_id LIKE 'evt_backlog_%%'")
    ctx.pg.execute(
        "INSERT INTO delivery (id, tenant_id, event_id, endpoint_id, event_type, status, attempts,"
        " next_attempt_at, last_attempt_at, last_status_code, last_error, event_created_at,"
        " created_at, updated_at)"
        " SELECT 'dlv_backlog_' || lpad(n::text, 8, '0'), %s, 'evt_backlog_' || (1 + n / %s),"
        " 'ep_backlog_' || (1 + n %% %s), 'bench.backlog', 'scheduled', 1,"
        f" {UTC_NOW} + interval '30 days' + n * interval '1 millisecond', {UTC_NOW}, 500,"
        f" 'HTTP 500 Internal Server Error', {UTC_NOW}, {UTC_NOW}, {UTC_NOW}"
        " FROM generate_series(0, %s - 1) AS n",
        [tenant, side, side, rows],
    )
    ctx.pg.execute("ANALYZE delivery")
    return {"tenant": tenant, "rows": rows, "insert_s": time.monotonic() - started}


def _due(ctx: Context, tenant: str) -> int:
    return int(
        ctx.pg.scalar(
            "SELECT count(*) FROM delivery WHERE status = 'scheduled'"
            f" AND next_attempt_at <= {UTC_NOW} AND tenant_id = %s",
            [tenant],
        )
    )


def dispatch(ctx: Context, tenant: str, due: int) -> dict[str, Any]:
    """Make `due` backlog rows due now; measure how fast the scheduler moves them to `queued`.

    The workers are stopped, so the published messages wait in RabbitMQ; the rows
    are put back (far future) and the queue purged afterwards.
    """
    args = ctx.args
    ctx.pg.execute(
        f"UPDATE delivery SET next_attempt_at = {UTC_NOW} - interval '1 second'"
        " WHERE id IN (SELECT id FROM delivery WHERE tenant_id = %s AND status = 'scheduled'"
        " ORDER BY next_attempt_at LIMIT %s)",
        [tenant, due],
    )
    with ctx.profile("scheduler-dispatch", "scheduler"), CpuMeter(ctx, "scheduler") as cpu:
        completed = wait_until(lambda: _due(ctx, tenant) == 0, args.dispatch_cap_s, 0.25)
    moved, first, last = ctx.pg.row(
        "SELECT count(*), extract(epoch FROM min(updated_at)), extract(epoch FROM max(updated_at))"
        " FROM delivery WHERE tenant_id = %s AND status = 'queued'",
        [tenant],
    )
    moved = int(moved)
    span = float(last or 0) - float(first or 0)
    # Rows of one pass share its timestamp: count the passes after the first over their span.
    rate = (
        (moved - min(moved, options.effective(args, "scheduler_batch"))) / span if span > 0 else 0.0
    )
    ctx.pg.execute(
        "UPDATE delivery SET status = 'scheduled', lease_until = NULL,"
        f" next_attempt_at = {UTC_NOW} + interval '30 days' WHERE tenant_id = %s"
        f" AND (status = 'queued' OR (status = 'scheduled' AND next_attempt_at <= {UTC_NOW}))",
        [tenant],
    )
    purge_queues(ctx.amqp_url, "hookline.deliver")
    return {
        "due": due,
        "moved": moved,
        "completed": completed,
        "span_s": span,
        "due_per_s": rate,
        **cpu.per_unit(moved),
    }
