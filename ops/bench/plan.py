"""The options, the order the scenarios run in, and the document they produce."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ops.bench import backlog, baseline, drain, flows, noisy, options, report, retention, scenarios
from ops.bench.context import Context
from ops.bench.options import PRIVATE
from ops.bench.services import postgres_version, purge_queues, rabbitmq_version

PHASES: list[dict[str, Any]] = []  # when each phase began, and the machine's load then


def _say(message: str) -> None:
    load = os.getloadavg()[0]
    PHASES.append({"phase": message, "at": report.now_iso(), "loadavg": load})
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load:.1f})", file=sys.stderr, flush=True)


def run_all(ctx: Context) -> dict[str, Any]:
    """Every scenario in turn; answer the document (without the command)."""
    args, skip = ctx.args, ctx.args.skip
    doc: dict[str, Any] = {
        "date": report.now_iso(),
        "machine": report.machine(postgres_version(ctx.pg_url), rabbitmq_version(ctx.amqp_url)),
        "settings": {k: v for k, v in vars(args).items() if k not in PRIVATE},
        "deviations": options.deviations(args),
        "required": options.REQUIRED,
    }
    in_use, limit = ctx.pg.row(
        "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
    )
    doc["machine"]["pg_connections_at_start"] = f"{in_use} of {limit}"
    found: dict[str, Any] = {}
    doc["scenarios"] = found
    _say("starting worker, scheduler and supervisor; warm-up")
    for role in ("worker", "scheduler", "supervisor"):
        ctx.processes.role(role)
    scenarios.end_to_end(ctx, max(10, args.e2e_deliveries // args.fanout // 10), "warmup")
    for name, batch in (("ingest", 0), ("batch", args.batch_size)):
        if name not in skip:
            _say(f"{name} ({'single events' if not batch else f'{batch} events a batch'})")
            runs = scenarios.ingest(ctx, batch)
            key = "batch_ingest" if batch else "ingest"
            found[key] = {
                "runs": runs,
                "summary": report.summarise(runs, "events_per_s", "p50_ms", "p99_ms"),
            }
    if "schema" not in skip:
        _say("ingest of a 20-property payload, without and with its schema, alternately")
        runs = scenarios.ingest_schema(ctx)
        found["ingest_schema"] = {
            "runs": runs,
            "summary": report.summarise(
                runs, "plain_events_per_s", "schema_events_per_s", "ratio_pct"
            ),
        }
    if {"ingest", "batch", "schema"} - skip:
        doc["vacuum_after_ingest_s"] = _vacuum(ctx)
    _rounds(ctx, found)
    if "lag" not in skip:
        rate = args.lag_rate or (
            found[f"e2e_fanout_{args.fanout}"]["summary"]["deliveries_per_s"]["median"]
            / 2
            / args.fanout
        )
        _say(f"lag at {rate:.0f} events/s")
        runs = [scenarios.lag(ctx, rate) for _ in range(args.runs)]
        found["lag"] = {
            "runs": runs,
            "summary": report.summarise(
                runs,
                "p50_ms",
                "p99_ms",
                "to_fan_out_p50_ms",
                "fan_out_to_attempt_p50_ms",
                "offered_deliveries_per_s",
            ),
        }
    _fairness_and_flow(ctx, found)
    if not {"isolation", "e2e"} & skip and args.hanging:
        # Each run with hanging endpoints follows an all-healthy one, its reference.
        _say(f"isolation: {args.hanging} of {args.fanout} endpoints hang, after all healthy")
        events = max(1, args.e2e_deliveries // args.fanout)
        healthy, runs = [], []
        for _ in range(args.runs):
            healthy.append(scenarios.end_to_end(ctx, events, "all-healthy"))
            runs.append(scenarios.isolation(ctx))
        summary = report.summarise(runs, "healthy_deliveries_per_s")
        reference = report.summarise(healthy, "healthy_deliveries_per_s")
        summary["all_healthy_deliveries_per_s"] = reference["healthy_deliveries_per_s"]
        found["isolation"] = {
            "runs": runs,
            "all_healthy_runs": healthy,
            "summary": summary,
            "ratio": summary["healthy_deliveries_per_s"]["median"]
            / reference["healthy_deliveries_per_s"]["median"],
        }
    if "backlog" not in skip:
        found["backlog"] = _backlog(ctx)
    doc["targets"] = report.targets(found, args.fanouts)
    doc["phases"] = PHASES
    return doc


def _fairness_and_flow(ctx: Context, found: dict[str, Any]) -> None:
    """Issue 17's scenarios: noisy neighbour, one FIFO endpoint, throttled beside unthrottled."""
    args, skip = ctx.args, ctx.args.skip
    if "noisy" not in skip:
        _say(
            f"noisy neighbour: A floods {args.noisy_deliveries:,} to a 200 ms endpoint,"
            f" B sends {args.noisy_rate:g}/s for {args.noisy_window_s:g} s"
        )
        runs = [noisy.one_run(ctx) for _ in range(args.runs)]
        found["noisy_neighbour"] = {
            "runs": runs,
            "summary": report.summarise(
                runs,
                "b_p50_ms",
                "b_p99_ms",
                "b_max_ms",
                "b_without_first_attempt",
                "a_requests_per_s",
                "a_timed_out_attempts",
                "a_open_at_window_start",
                "a_open_at_window_end",
            ),
        }
    if "retention" not in skip:
        _say(f"retention: {args.retention_attempts:,} attempts over 30 days, a day dropped")
        runs = [retention.one_run(ctx) for _ in range(args.runs)]
        found["retention"] = {
            "runs": runs,
            "summary": report.summarise(
                runs,
                "drop_day_s",
                "drop_held_s",
                "dropped_rows",
                "batch_deleted_rows",
                "live_p99_ms",
                "live_during_drop_p99_ms",
                "live_during_purge_p99_ms",
            ),
        }
    for name, one_run, keys in (
        ("fifo", flows.fifo, ("deliveries_per_s", "out_of_order")),
        (
            "throttled",
            flows.throttled,
            (
                "throttled_busiest_second",
                "throttled_median_per_s",
                "unthrottled_deliveries_per_s",
                "reference_unthrottled_deliveries_per_s",
                "unthrottled_per_endpoint_per_s",
                "reference_per_endpoint_per_s",
                "unthrottled_ratio",
            ),
        ),
    ):
        if name not in skip:
            _say(f"{name}: {args.flow_events:,} events")
            runs = [one_run(ctx) for _ in range(args.runs)]
            unavailable = [r["unavailable"] for r in runs if "unavailable" in r]
            found[name] = (
                {"unavailable": unavailable[0]}
                if unavailable
                else {"runs": runs, "summary": report.summarise(runs, *keys)}
            )


def _vacuum(ctx: Context) -> float:
    """VACUUM (ANALYZE) the bench database; answer how long it took.

    The ingest scenarios leave hundreds of thousands of events behind, each
    written twice (inserted, then marked fanned out). Until autovacuum removes
    the dead rows, and the dead entries of the partial index the scheduler
    scans every second, the delivery scenarios that follow pay for them (at
    fan-out 1 PostgreSQL's CPU per delivery was 0.37 ms in runs without the
    ingest scenarios before them, 0.88 ms in a full run). Each delivery
    scenario starts from a vacuumed database instead; the vacuum's own time
    is reported.
    """
    _say("vacuum after the ingest scenarios")
    started = time.monotonic()
    ctx.pg.execute("VACUUM (ANALYZE)")
    return time.monotonic() - started


def _rounds(ctx: Context, found: dict[str, Any]) -> None:
    """The naive baseline, then each delivery scenario, round after round.

    The scenarios take turns so that every median comes from the same minutes
    of a machine whose speed drifts; each is compared with the baseline's median,
    and the transform's with the plain runs at the same fan-out.
    """
    args, skip = ctx.args, ctx.args.skip
    plan = _delivery_plan(ctx)
    if "baseline" not in skip:
        baseline.prepare(ctx)
    _say(
        "in turns: "
        + ", ".join((["naive baseline"] if "baseline" not in skip else []) + [n for n, _ in plan])
    )
    naive: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
    for index in range(args.runs):
        if "baseline" not in skip:
            naive.append(baseline.one_run(ctx, args.baseline_messages, index))
        for name, run in plan:
            runs[name].append(run())
    if naive:
        found["baseline"] = {
            "runs": naive,
            "client": naive[0]["client"],
            "summary": report.summarise(naive, "deliveries_per_s"),
        }
    for name, done in runs.items():
        keys = ["deliveries_per_s"]
        keys += ["from_start_per_s"] if name == "drain" else ["pg_transactions_per_delivery"]
        summary = report.summarise(done, *keys)
        found[name] = {"runs": done, "summary": summary}
        if naive:
            found[name]["ratio_to_baseline"] = (
                summary["deliveries_per_s"]["median"]
                / found["baseline"]["summary"]["deliveries_per_s"]["median"]
            )
    if "e2e_transform" in found:  # a typical transform's cost, against the plain runs
        plain = found[f"e2e_fanout_{args.fanout}"]["summary"]["deliveries_per_s"]["median"]
        found["e2e_transform"]["ratio_to_plain"] = (
            found["e2e_transform"]["summary"]["deliveries_per_s"]["median"] / plain
        )


def _delivery_plan(ctx: Context) -> list[tuple[str, Any]]:
    """The delivery scenarios that take turns with the baseline, each as (name, one run)."""
    args, skip = ctx.args, ctx.args.skip
    fanouts = args.fanouts if "fanouts" not in skip else args.fanouts[:1]
    if "e2e" in skip:
        fanouts = []
    plan: list[tuple[str, Any]] = []
    for fanout in fanouts:
        events = max(1, args.e2e_deliveries // fanout)
        plan.append(
            (
                f"e2e_fanout_{fanout}",
                lambda e=events, f=fanout: scenarios.end_to_end(ctx, e, "e2e", f),
            )
        )
    events = max(1, args.e2e_deliveries // args.fanout)
    if "shared" not in skip:
        plan.append(
            (
                "e2e_shared_host",
                lambda: scenarios.end_to_end(ctx, events, "shared", shared_host=True),
            )
        )
    if "transform" not in skip and fanouts:
        # The first fan-out again, every endpoint shaping its bodies (`ratio_to_plain`).
        plan.append(
            (
                "e2e_transform",
                lambda: scenarios.end_to_end(
                    ctx, events, "transform", transform=scenarios.SLACK_TRANSFORM
                ),
            )
        )
    if "drain" not in skip:
        plan.append(("drain", lambda: drain.one_run(ctx, args.drain_deliveries, args.fanout)))
    return plan


def _backlog(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    # The reference: runs of the same size just before the rows go in, so that only the
    # backlog differs (the worker's RSS keeps the high-water mark of earlier scenarios).
    _say("backlog: end to end just before")
    runs_before = [
        scenarios.end_to_end(ctx, args.backlog_e2e_events, "e2e-before-backlog")
        for _ in range(args.runs)
    ]
    _say(f"backlog: inserting {args.backlog_rows:,} scheduled retries")
    inserted = backlog.insert(ctx, args.backlog_rows)
    _say("backlog: end to end with the backlog")
    after = [
        scenarios.end_to_end(ctx, args.backlog_e2e_events, "e2e-backlog") for _ in range(args.runs)
    ]
    _say("backlog: scheduler dispatch, workers stopped")
    ctx.processes.stop("worker")
    purge_queues(ctx.amqp_url, "hookline.deliver")
    dispatch = [
        backlog.dispatch(ctx, inserted["tenant"], min(args.dispatch_due, args.backlog_rows))
        for _ in range(args.runs)
    ]
    summary = {
        "rss_max_process_mib": report.spread(
            [r["worker_rss_max_process_mib"] for r in runs_before]
        ),
        "rss_max_total_mib": report.spread([r["worker_rss_max_total_mib"] for r in runs_before]),
        "rss_backlog_max_process_mib": report.spread(
            [r["worker_rss_max_process_mib"] for r in after]
        ),
        "rss_backlog_max_total_mib": report.spread([r["worker_rss_max_total_mib"] for r in after]),
        "e2e_backlog_deliveries_per_s": report.spread([r["deliveries_per_s"] for r in after]),
        "dispatch_due_per_s": report.spread([r["due_per_s"] for r in dispatch]),
        **{f"dispatch_{k}": v for k, v in report.summarise(dispatch).items()},
    }
    before = summary["rss_max_total_mib"]["median"]
    change = (summary["rss_backlog_max_total_mib"]["median"] / before - 1) * 100
    return {
        "insert": inserted,
        "e2e_runs": after,
        "dispatch_runs": dispatch,
        "summary": summary,
        "rss_change_pct": change,
    }


def finish(document: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the JSON and print the table."""
    report.write(document, args.json)
    machine = document["machine"]
    print(
        f"Hookline benchmark, {document['date']}, {machine['nproc']} cores {machine['cpu']}, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, PostgreSQL "
        f"{machine['postgresql']}, RabbitMQ {machine['rabbitmq']}; speed gauge "
        f"{machine['speed_gauge_ms_at_start']} ms at the start, "
        f"{machine['speed_gauge_ms_at_end']} ms at the end (lower is faster)\n"
        f"command: {document['command']}  ({document['duration_s']} s)\n"
    )
    print(report.deviations(document))
    if "vacuum_after_ingest_s" in document:
        took = document["vacuum_after_ingest_s"]
        print(f"VACUUM (ANALYZE) after the ingest scenarios: {took:.1f} s")
    print()
    print(report.table(document))
    print(f"\nJSON: {args.json}")
