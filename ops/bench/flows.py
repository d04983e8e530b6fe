"""Flow control's scenarios (issue 17 §1, §3): one FIFO endpoint, and throttled beside unthrottled.

`fifo`: one tenant, one endpoint with `ordering: "fifo"`, `--flow-events`
events; deliveries/s from the first attempt to the last success, and how many
first attempts started before the one of an event ingested earlier
(`out_of_order`, 0 when FIFO holds).

`throttled`: one tenant, `--fanouts`' first fan-out of endpoints, each event to
all of them; first all unthrottled (the reference), then the same with the
first `THROTTLED` endpoints at `rate_limit_per_s` `THROTTLE_PER_S`. The
receiver counts each endpoint's requests per second (`/tick/NAME/...`); the
throttled endpoints' busiest second must stay within the limit + 10 %, and
each unthrottled endpoint's deliveries/s is reported as a ratio to an endpoint's
in the reference run, measured in the same invocation (the same events reach
each endpoint in both, so 1.0 is full speed). The throttled endpoints need not
drain: their rest is cancelled once the unthrottled ones are done.

Both need the endpoint fields of flow control; on an API without them (it
answers 4xx to the fields) a scenario reports `unavailable` with the answer
instead of a figure.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from ops.bench import scenarios
from ops.bench.context import Context, wait_until

THROTTLED = 2  # endpoints throttled in the throttled run
THROTTLE_PER_S = 50
SETTLE_S = 2.0  # the first and last seconds of a throttled endpoint's run are partial


class Unavailable(Exception):
    """The API refused flow control's endpoint fields."""


def _endpoint(ctx: Context, key: str, path: str, **fields: Any) -> str:
    try:
        return ctx.api.endpoint(key, f"http://127.0.0.1:{ctx.ports[0]}{path}", **fields)
    except RuntimeError as exc:
        if fields:
            raise Unavailable(str(exc)) from exc
        raise


def fifo(ctx: Context) -> dict[str, Any]:
    """One FIFO endpoint's deliveries/s, and whether its first attempts kept event order."""
    args = ctx.args
    tenant, key = ctx.tenant("fifo")
    try:
        _endpoint(ctx, key, "/tick/fifo/", ordering="fifo")
    except Unavailable as exc:
        return {"unavailable": str(exc)}
    result = scenarios.load(ctx, key, "--connections", "1", "--count", str(args.flow_events))
    expected = result["accepted"]
    done = wait_until(
        lambda: scenarios.succeeded(ctx, tenant)[0] >= expected, args.scenario_cap_s, 0.25
    )
    count, last = scenarios.succeeded(ctx, tenant)
    first = ctx.pg.scalar(
        "SELECT extract(epoch FROM min(started_at)) FROM attempt WHERE tenant_id = %s", [tenant]
    )
    out_of_order = ctx.pg.scalar(
        "SELECT count(*) FROM (SELECT a.started_at, lag(a.started_at) OVER"
        " (ORDER BY e.created_at, e.id) AS before FROM attempt a"
        " JOIN delivery d ON d.id = a.delivery_id JOIN event e ON e.id = d.event_id"
        " WHERE a.tenant_id = %s AND a.number = 1) AS o WHERE started_at < before",
        [tenant],
    )
    if not done:
        scenarios.cancel(ctx, tenant)
    return {
        "events": expected,
        "deliveries": count,
        "completed": done,
        "deliveries_per_s": count / max(last - float(first or last), 1e-9),
        "out_of_order": int(out_of_order or 0),
    }


def throttled(ctx: Context) -> dict[str, Any]:
    """The all-unthrottled reference, then the same with some endpoints throttled."""
    reference = _fan_out_run(ctx, throttled=0)
    if "unavailable" in reference:
        return reference
    run = _fan_out_run(ctx, throttled=THROTTLED)
    if "unavailable" in run:
        return run
    return {
        **run,
        "reference_unthrottled_deliveries_per_s": reference["unthrottled_deliveries_per_s"],
        "reference_per_endpoint_per_s": reference["unthrottled_per_endpoint_per_s"],
        # Each unthrottled endpoint's pace against an endpoint's in the all-unthrottled run:
        # the same events, so 1.0 is full speed. Not their total, which fewer endpoints
        # make smaller by itself (8 of 10: 0.8 when the events come at the same pace).
        "unthrottled_ratio": run["unthrottled_per_endpoint_per_s"]
        / reference["unthrottled_per_endpoint_per_s"],
    }


def _fan_out_run(ctx: Context, throttled: int) -> dict[str, Any]:
    args = ctx.args
    # Each run's own receiver paths: the ticks of one run never add to another's.
    label = f"throttled-{throttled}-{uuid.uuid4().hex[:6]}"
    tenant, key = ctx.tenant(label)
    limited, free = [], []
    try:
        for n in range(args.fanout):
            if n < throttled:
                limited.append(
                    _endpoint(ctx, key, f"/tick/{label}-rl-{n}/", rate_limit_per_s=THROTTLE_PER_S)
                )
            else:
                free.append(_endpoint(ctx, key, f"/tick/{label}-ok-{n}/"))
    except Unavailable as exc:
        return {"unavailable": str(exc)}
    result = scenarios.load(
        ctx, key, "--connections", str(args.connections), "--count", str(args.flow_events)
    )
    expected = result["accepted"] * len(free)
    wait_until(
        lambda: scenarios.succeeded(ctx, tenant, free)[0] >= expected, args.scenario_cap_s, 0.25
    )
    count, last = scenarios.succeeded(ctx, tenant, free)
    per_s = count / max(last - result["started_at"], 1e-9)
    found: dict[str, Any] = {
        "events": result["accepted"],
        "unthrottled_deliveries": count,
        "unthrottled_deliveries_per_s": per_s,
        "unthrottled_per_endpoint_per_s": per_s / max(len(free), 1),
    }
    if limited:
        time.sleep(SETTLE_S)  # the throttled ones go on at their pace meanwhile
        ticks = ctx.receiver("/_stats")["ticks"]
        busiest: list[int] = []
        typical: list[float] = []
        series: list[list[int]] = []
        for n in range(throttled):
            seconds = {int(s): c for s, c in ticks.get(f"{label}-rl-{n}", {}).items()}
            if not seconds:  # nothing arrived yet (a starved box): nothing to count, not a crash
                busiest.append(0)
                typical.append(0)
                series.append([])
                continue
            inner = [c for s, c in seconds.items() if min(seconds) < s < max(seconds)]
            busiest.append(max(inner or [0]))
            typical.append(statistics.median(inner) if inner else 0)
            series.append([seconds.get(s, 0) for s in range(min(seconds), max(seconds) + 1)])
        found.update(
            {
                "throttle_per_s": THROTTLE_PER_S,
                "throttled_busiest_second": max(busiest),
                "throttled_median_per_s": statistics.median(typical),
                "throttled_within_limit": max(busiest) <= THROTTLE_PER_S * 1.1,
                "throttled_seconds": series,  # each endpoint's requests, second by second
            }
        )
    scenarios.cancel(ctx, tenant)
    return found
