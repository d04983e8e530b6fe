"""The scenarios on Hookline's real processes: ingest, end to end, lag, isolation."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from typing import Any

from engine.db import models
from ops.bench import shapes
from ops.bench.context import Context, CpuMeter, RssSampler, wait_until
from ops.bench.processes import ROOT
from ops.bench.services import purge_queues

ROLES = ("api", "worker", "scheduler", "supervisor")  # Hookline's processes, all running
# Every state a delivery is still at work in (`engine.db.models.OPEN_STATES`): a run that
# ends cancels them all. Once without `throttled`, a throttled endpoint's rest went on at its
# rate into the next run, to the same receiver path, and counted twice the rate there.
OPEN_STATES = "(" + ", ".join(f"'{state}'" for state in models.OPEN_STATES) + ")"
# A typical transform: a Slack-style incoming-webhook body made from the bench's payload.
SLACK_TRANSFORM = {
    "jmespath": "{text: join('', ['Event ', type, ' #', to_string(data.n), ' for ', endpoint.id]),"
    " blocks: [{type: 'section', text: {type: 'mrkdwn', text: join('', ['*', type, '*'])}}]}"
}
QUEUES = ("hookline.fan_out", "hookline.deliver", "hookline.fan_out.DQ", "hookline.deliver.DQ")


def load(ctx: Context, key: str, *options: str, timeout_s: float = 600) -> dict[str, Any]:
    """Run the load generator in its own process; answer its JSON result."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.bench.load",
            *("--url", ctx.api.base_url + "/v1/events", "--key", key),
            *("--payload-bytes", str(ctx.args.payload_bytes), *options),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def ingest(ctx: Context, batch: int = 0) -> list[dict[str, Any]]:
    """Events/s accepted and latency per request: single events, or batches of `batch`.

    Every process runs, as users run Hookline; the tenant has no endpoints, so its
    events are fanned out to nobody. Single events go over `--connections`
    connections, batches over `--batch-connections`.
    """
    args = ctx.args
    label = f"batch-{batch}" if batch else "ingest"
    runs = []
    for index in range(args.runs):
        tenant, key = ctx.tenant(label)
        connections = args.batch_connections if batch else args.connections
        profile = ctx.profile(f"api-{label}", "api") if index == 0 else contextlib.nullcontext()
        with profile, CpuMeter(ctx, *ROLES) as cpu:
            result = load(
                ctx,
                key,
                "--connections",
                str(connections),
                "--duration",
                str(args.ingest_duration_s),
                "--warmup",
                str(args.ingest_warmup_s),
                "--batch",
                str(batch),
            )
        events = result["events_accepted"]
        runs.append(
            {
                "events_per_s": result["events_accepted_per_s"],
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "requests": result["requests"],
                "events": events,
                "statuses": result["statuses"],
                **cpu.per_unit(events),
            }
        )
        _fanned_out(ctx, tenant)
    return runs


def ingest_schema(ctx: Context) -> list[dict[str, Any]]:
    """Single-event ingest of a 20-property payload, without and with a schema, alternately.

    Each run pairs two measurements the same but for one thing: the second
    tenant has declared the event type with `shapes.schema()`, so every event
    is validated (and its 20 properties checked) at ingest; the first has no
    catalog, which is the cached negative answer. Their order alternates from
    run to run, so that a drift of the machine does not favour one side.
    """
    args = ctx.args
    runs = []
    for index in range(args.runs):
        measured: dict[str, float] = {}
        for side in ("plain", "schema") if index % 2 == 0 else ("schema", "plain"):
            tenant, key = ctx.tenant(f"ingest-{side}")
            if side == "schema":
                _declare(ctx, key)
            result = load(
                ctx,
                key,
                *("--connections", str(args.connections), "--shape", "properties20"),
                *("--duration", str(args.ingest_duration_s)),
                *("--warmup", str(args.ingest_warmup_s)),
            )
            if "422" in result["statuses"]:
                raise RuntimeError(f"ingest_schema: the schema refused events: {result}")
            measured[f"{side}_events_per_s"] = result["events_accepted_per_s"]
            measured[f"{side}_p99_ms"] = result["p99_ms"]
            _fanned_out(ctx, tenant)
        measured["ratio_pct"] = (
            100 * measured["schema_events_per_s"] / measured["plain_events_per_s"]
        )
        runs.append(measured)
    return runs


def _declare(ctx: Context, key: str) -> None:
    body = {"name": shapes.EVENT_TYPE, "schema": shapes.schema()}
    status, answer = ctx.api.call("POST", "/v1/event-types", body, key=key)
    if status != 201:
        raise RuntimeError(f"declaring the bench's event type answered {status}: {answer}")


def _fanned_out(ctx: Context, tenant: str) -> None:
    """Wait for the worker to fan a run's events out, so they do not spill into the next run."""
    pending = (
        "SELECT count(*) FROM event_fan_out f JOIN event e ON e.id = f.event_id"
        " WHERE e.tenant_id = %s"
    )
    if not wait_until(lambda: ctx.pg.scalar(pending, [tenant]) == 0, ctx.args.scenario_cap_s):
        raise RuntimeError(f"the worker did not fan out {tenant}'s events")


def succeeded(ctx: Context, tenant: str, endpoints: list[str] | None = None) -> tuple[int, float]:
    """Succeeded deliveries of a tenant (optionally of some endpoints) and the last one's time."""
    sql = (
        "SELECT count(*), extract(epoch FROM max(updated_at)) FROM delivery"
        " WHERE tenant_id = %s AND status = 'succeeded'"
    )
    params: list[Any] = [tenant]
    if endpoints is not None:
        sql += " AND endpoint_id = ANY(%s)"
        params.append(endpoints)
    count, last = ctx.pg.row(sql, params)
    return int(count), float(last or 0.0)


def end_to_end(
    ctx: Context,
    events: int,
    label: str = "e2e",
    fanout: int = 0,
    shared_host: bool = False,
    transform: dict[str, str] | None = None,
) -> dict[str, Any]:
    """N events x fan-out M, from the first ingest to the last delivery recorded.

    M is `fanout`, or the benchmark's first fan-out; `healthy_deliveries_per_s`
    leaves out the endpoints the isolation scenario would make hang. With
    `transform`, every endpoint shapes its bodies with it.
    """
    args = ctx.args
    fanout = fanout or args.fanout
    tenant, key = ctx.tenant(label)
    endpoints = ctx.endpoints(key, fanout, shared_host=shared_host, transform=transform)
    healthy = endpoints[args.hanging :] if fanout == args.fanout else endpoints
    expected = events * len(endpoints)
    transactions = ctx.pg.transactions()
    name = f"{label}-fanout-{fanout}" + ("-one-host" if shared_host else "")
    worker_profile = ctx.profile(f"worker-{name}", "worker")
    api_profile = ctx.profile(f"api-{name}", "api")
    cpu = CpuMeter(ctx, *ROLES, "receiver")
    with RssSampler(ctx.processes.pid("worker")) as rss, worker_profile, api_profile, cpu:
        result = load(ctx, key, "--connections", str(args.connections), "--count", str(events))
        _all_accepted(label, result)
        wait_until(lambda: succeeded(ctx, tenant)[0] >= expected, args.scenario_cap_s, 0.25)
    count, last = succeeded(ctx, tenant)
    healthy_count, healthy_last = succeeded(ctx, tenant, healthy)
    time.sleep(1.5)  # let the idle backends report their transactions
    transactions = ctx.pg.transactions() - transactions
    started = result["started_at"]
    if count < expected:
        raise RuntimeError(f"{label}: {count} of {expected} deliveries in {args.scenario_cap_s}s")
    return {
        "fanout": fanout,
        "shared_host": shared_host,
        "events": events,
        "deliveries": count,
        "elapsed_s": last - started,
        "deliveries_per_s": count / (last - started),
        "healthy_deliveries_per_s": healthy_count / (healthy_last - started),
        "ingest_statuses": result["statuses"],
        "worker_rss_max_process_mib": rss.max_process_kib / 1024,
        "worker_rss_max_total_mib": rss.max_total_kib / 1024,
        "worker_processes_seen": rss.processes,
        "pg_transactions_per_delivery": transactions / count,
        **cpu.per_unit(count),
    }


def _all_accepted(label: str, result: dict[str, Any]) -> None:
    """Fail the run at once when the API refused or failed an event: it would never arrive."""
    if set(result["statuses"]) - {"202"}:
        raise RuntimeError(f"{label}: the API did not accept every event: {result['statuses']}")


def lag(ctx: Context, rate_events_per_s: float) -> dict[str, Any]:
    """Event-to-first-attempt percentiles at a fixed offered rate, from the attempt rows."""
    args = ctx.args
    tenant, key = ctx.tenant("lag")
    endpoints = ctx.endpoints(key, args.fanout)
    result = load(
        ctx,
        key,
        "--connections",
        str(args.connections),
        "--rate",
        f"{rate_events_per_s:.3f}",
        "--duration",
        str(args.lag_duration_s),
    )
    expected = result["accepted"] * len(endpoints)
    wait_until(lambda: succeeded(ctx, tenant)[0] >= expected, args.scenario_cap_s)
    # The median is also split at the fan-out: before it the API, RabbitMQ and dramatiq,
    # after it the worker.
    p50, p99, attempts, to_fan_out, to_attempt = ctx.pg.row(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY s), count(*),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY f),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY w) FROM ("
        "  SELECT extract(epoch FROM a.started_at - e.created_at) * 1000 AS s,"
        "   extract(epoch FROM d.created_at - e.created_at) * 1000 AS f,"
        "   extract(epoch FROM a.started_at - d.created_at) * 1000 AS w"
        "  FROM attempt a JOIN delivery d ON d.id = a.delivery_id JOIN event e ON e.id = d.event_id"
        "  WHERE a.tenant_id = %s AND a.number = 1) AS lags",
        [tenant],
    )
    return {
        "to_fan_out_p50_ms": float(to_fan_out or 0.0),
        "fan_out_to_attempt_p50_ms": float(to_attempt or 0.0),
        "offered_events_per_s": rate_events_per_s,
        "offered_deliveries_per_s": rate_events_per_s * len(endpoints),
        "events": result["accepted"],
        "first_attempts": int(attempts),
        "p50_ms": float(p50 or 0.0),
        "p99_ms": float(p99 or 0.0),
    }


def isolation(ctx: Context) -> dict[str, Any]:
    """Healthy endpoints' deliveries/s while the first `hanging` ones hang until the timeout."""
    args = ctx.args
    tenant, key = ctx.tenant("isolation")
    endpoints = ctx.endpoints(key, args.fanout, hanging=args.hanging)
    healthy = endpoints[args.hanging :]
    ctx.receiver("/_arm")
    events = max(1, args.e2e_deliveries // args.fanout)
    expected = events * len(healthy)
    result = load(ctx, key, "--connections", str(args.connections), "--count", str(events))
    completed = wait_until(
        lambda: succeeded(ctx, tenant, healthy)[0] >= expected, args.isolation_cap_s, 0.1
    )
    stopped_at = time.time()
    count, last = succeeded(ctx, tenant, healthy)
    started = result["started_at"]
    elapsed = (last if completed else stopped_at) - started
    hanging_attempts = int(
        ctx.pg.scalar(
            "SELECT count(*) FROM attempt WHERE tenant_id = %s AND error_class = 'timeout'",
            [tenant],
        )
    )
    cancel(ctx, tenant)
    return {
        "healthy_deliveries": count,
        "healthy_expected": expected,
        "completed": completed,
        "elapsed_s": elapsed,
        "healthy_deliveries_per_s": count / elapsed,
        "timed_out_attempts": hanging_attempts,
    }


def cancel(ctx: Context, tenant: str) -> None:
    """End a run: cancel its open deliveries, release the hanging requests, drain the queue."""
    # In id order and skipping rows a worker holds: the workers update rows in id order
    # too, and a plain UPDATE of the tenant's rows could deadlock with them. Rows a worker
    # held are taken on a later round, once it has moved them.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        moved = ctx.pg.execute(
            "UPDATE delivery SET status = 'cancelled', lease_until = NULL, next_attempt_at = NULL"
            " WHERE id IN (SELECT id FROM delivery WHERE tenant_id = %s"
            f" AND status IN {OPEN_STATES} ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)",
            [tenant],
        )
        if not moved and not ctx.pg.scalar(
            f"SELECT count(*) FROM delivery WHERE tenant_id = %s AND status IN {OPEN_STATES}",
            [tenant],
        ):
            break
        if not moved:
            time.sleep(0.1)
    purge_queues(ctx.amqp_url, "hookline.deliver")
    wait_until(lambda: ctx.receiver("/_release") and ctx.receiver("/_stats")["hanging"] == 0, 30)
    time.sleep(1.0)  # let the workers record (and discard) the released attempts
