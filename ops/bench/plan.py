"""The options, the order the scenarios run in, and the document they produce."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ops.bench import backlog, baseline, report, scenarios
from ops.bench.context import Context
from ops.bench.services import postgres_version, purge_queues, rabbitmq_version

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
PRIVATE = ("json", "skip", "profile", "py_spy")  # options that are not settings
SKIPPABLE = ("ingest", "baseline", "lag", "isolation", "backlog")

# Sizes per mode: (full, smoke, what). A given option overrides both.
SIZES: dict[str, tuple[float, float, str]] = {
    "runs": (3, 1, "runs of each scenario"),
    "e2e_events": (1000, 100, "events per end-to-end and isolation run (x fan-out)"),
    "ingest_duration_s": (10, 2, "seconds measured per ingest run"),
    "ingest_warmup_s": (1, 0.5, "seconds of ingest before measuring"),
    "lag_duration_s": (10, 2, "seconds of offered load per lag run"),
    "isolation_cap_s": (45, 20, "longest isolation run, seconds"),
    "backlog_rows": (1_000_000, 10_000, "scheduled retries inserted"),
    "backlog_e2e_events": (300, 50, "events per end-to-end run with the backlog"),
    "dispatch_due": (100_000, 5_000, "backlog rows made due per dispatch run"),
    "dispatch_cap_s": (30, 20, "longest dispatch run, seconds"),
    "baseline_messages": (5000, 300, "messages per naive baseline run"),
    "scenario_cap_s": (180, 60, "longest wait for one run's deliveries, seconds"),
    "max_minutes": (30, 5, "the whole benchmark's deadline"),
}


def _show(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the mode's sizes filled in."""
    p = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the results go")
    p.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(SKIPPABLE)}")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    p.add_argument("--profile", type=Path, default=None, help="py-spy profiles into this dir")
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy executable")
    p.add_argument("--connections", type=int, default=32, help="load generator connections")
    p.add_argument("--fanout", type=int, default=10, help="endpoints per tenant (M)")
    p.add_argument("--payload-bytes", type=int, default=256, help="padding in each event")
    p.add_argument("--api-workers", type=int, default=2)
    p.add_argument("--api-threads", type=int, default=16)
    p.add_argument("--worker-processes", type=int, default=2)
    p.add_argument("--worker-threads", type=int, default=64)
    p.add_argument("--db-max-connections", type=int, default=16, help="pool per process")
    p.add_argument("--request-timeout-s", type=float, default=5.0, help="the hang's length")
    p.add_argument("--scheduler-batch", type=int, default=500)
    p.add_argument("--scheduler-interval-s", type=float, default=1.0)
    p.add_argument("--rate-limit-per-s", type=int, default=0, help="ingest limits; 0 = off")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--baseline-threads", type=int, default=8, help="naive worker threads")
    p.add_argument(
        "--lag-rate",
        type=float,
        default=0.0,
        help="events/s offered in the lag runs (default: half the measured end-to-end maximum)",
    )
    for name, (full, smoke, what) in SIZES.items():
        kind = int if float(full).is_integer() and float(smoke).is_integer() else float
        help_text = f"{what} (default {_show(full)}, smoke {_show(smoke)})"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)
    args = p.parse_args(argv)
    for name, (full, smoke, _what) in SIZES.items():
        if getattr(args, name) is None:
            chosen = smoke if args.smoke else full
            setattr(args, name, int(chosen) if float(chosen).is_integer() else chosen)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SKIPPABLE)
    if unknown:
        p.error(f"--skip: unknown {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.fanout < 1:
        p.error("--runs and --fanout are at least 1")
    if args.profile and not args.py_spy:
        p.error("--profile needs py-spy (pip install py-spy, or give --py-spy PATH)")
    args.hanging = max(1, round(args.fanout / 10)) if args.fanout > 1 else 0
    return args


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
    }
    in_use, limit = ctx.pg.row(
        "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
    )
    doc["machine"]["pg_connections_at_start"] = f"{in_use} of {limit}"
    found: dict[str, Any] = {}
    doc["scenarios"] = found
    if "ingest" not in skip:
        _say("ingest (API alone)")
        runs = scenarios.ingest(ctx)
        found["ingest"] = {
            "runs": runs,
            "summary": report.summarise(runs, "events_per_s", "p50_ms", "p99_ms"),
        }
    _say("starting worker and scheduler; warm-up")
    ctx.processes.role("worker")
    ctx.processes.role("scheduler")
    scenarios.end_to_end(ctx, max(10, args.e2e_events // 10), "warmup")
    # The baseline and end to end take turns, so that both medians come from the same
    # minutes of a machine whose speed drifts (Hookline's idle processes cost it nothing).
    if "baseline" not in skip:
        _say("naive baseline and end to end, in turns")
        baseline.prepare(ctx)
    else:
        _say("end to end")
    naive: list[dict[str, Any]] = []
    runs = []
    for index in range(args.runs):
        if "baseline" not in skip:
            naive.append(baseline.one_run(ctx, args.baseline_messages, index))
        runs.append(scenarios.end_to_end(ctx, args.e2e_events))
    if naive:
        found["baseline"] = {
            "runs": naive,
            "client": naive[0]["client"],
            "summary": report.summarise(naive, "deliveries_per_s"),
        }
    e2e = report.summarise(
        runs, "deliveries_per_s", "healthy_deliveries_per_s", "pg_transactions_per_delivery"
    )
    found["end_to_end"] = {"runs": runs, "summary": e2e}
    if "baseline" in found:
        found["end_to_end"]["ratio_to_baseline"] = (
            e2e["deliveries_per_s"]["median"]
            / found["baseline"]["summary"]["deliveries_per_s"]["median"]
        )
    if "lag" not in skip:
        rate = args.lag_rate or e2e["deliveries_per_s"]["median"] / 2 / args.fanout
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
    if "isolation" not in skip and args.hanging:
        # Each run with hanging endpoints follows an all-healthy one, its reference.
        _say(f"isolation: {args.hanging} of {args.fanout} endpoints hang, after all healthy")
        healthy, runs = [], []
        for _ in range(args.runs):
            healthy.append(scenarios.end_to_end(ctx, args.e2e_events, "all-healthy"))
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
    doc["targets"] = report.targets(found)
    doc["phases"] = PHASES
    return doc


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
    print(report.table(document))
    print(f"\nJSON: {args.json}")
