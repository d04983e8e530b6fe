"""The benchmark's options: its sizes, and Hookline's settings, each left at the product's default.

Every setting of Hookline's processes stays as a user who installs it gets it,
unless an option here is given; each one given is a deviation, recorded in the
JSON and printed beside the figures. The few variables the benchmark must set
to run at all (where PostgreSQL, RabbitMQ and the ports are, and that endpoints
on loopback may be reached) are `REQUIRED`, with why.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from engine.settings import Settings

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
PRIVATE = ("json", "skip", "profile", "py_spy")  # options that are not settings
SKIPPABLE = (
    "ingest",
    "batch",
    "schema",
    "baseline",
    "e2e",
    "fanouts",
    "shared",
    "transform",
    "drain",
    "lag",
    "isolation",
    "backlog",
    "noisy",
    "fifo",
    "throttled",
    "retention",
)

# Sizes per mode: (full, smoke, what). A given option overrides both.
SIZES: dict[str, tuple[float, float, str]] = {
    "runs": (3, 1, "runs of each scenario"),
    "e2e_deliveries": (10_000, 600, "deliveries per end-to-end run (events = this / fan-out)"),
    "drain_deliveries": (
        10_000,
        600,
        "deliveries accepted before each drain (at the largest fan-out)",
    ),
    "ingest_duration_s": (10, 2, "seconds measured per ingest run"),
    "ingest_warmup_s": (1, 0.5, "seconds of ingest before measuring"),
    "lag_duration_s": (10, 2, "seconds of offered load per lag run"),
    "isolation_cap_s": (60, 30, "longest isolation run, seconds"),
    "backlog_rows": (1_000_000, 10_000, "scheduled retries inserted"),
    "backlog_e2e_events": (300, 50, "events per end-to-end run with the backlog"),
    "dispatch_due": (100_000, 5_000, "backlog rows made due per dispatch run"),
    "dispatch_cap_s": (30, 20, "longest dispatch run, seconds"),
    "baseline_messages": (5000, 300, "messages per naive baseline run"),
    "noisy_deliveries": (50_000, 2_000, "noisy-neighbour: tenant A's flood, deliveries"),
    "noisy_window_s": (30, 5, "noisy-neighbour: seconds tenant B sends (and longest wait after)"),
    "noisy_rate": (50, 50, "noisy-neighbour: tenant B's events/s"),
    "flow_events": (2_000, 200, "fifo and throttled: events per run"),
    "retention_attempts": (10_000_000, 30_000, "retention: attempts of history over 30 days"),
    "scenario_cap_s": (180, 60, "longest wait for one run's deliveries, seconds"),
    # The smoke's deadline is a hang guard: a CI box at half speed, beside the other
    # integration tests, took 8.5 minutes over a smoke that takes 6 when it is not starved.
    "max_minutes": (40, 12, "the whole benchmark's deadline"),
}

# Options that set one of Hookline's settings: option -> the settings it sets.
SETTING_OPTIONS: dict[str, tuple[str, ...]] = {
    "api_workers": ("api_workers",),
    "api_threads": ("api_threads",),
    "worker_processes": ("worker_processes",),
    "worker_threads": ("worker_threads",),
    "db_max_connections": ("db_max_connections",),
    "request_timeout_s": ("request_timeout_s",),
    "rate_limit_per_s": ("rate_limit_ingest_per_s", "rate_limit_tenant_ingest_per_s"),
    "log_level": ("log_level",),
    "scheduler_batch": ("scheduler_batch",),
}

# What the benchmark must set to run at all, and why; recorded with the deviations.
REQUIRED = {
    "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS": "true: the receiver listens on 127.0.0.1",
    "HOOKLINE_DATABASE_URL / BROKER_URL": "the benchmark's own database and vhost",
    "HOOKLINE_BIND / *_METRICS_BIND / DATA_DIR": "free ports and a scratch directory",
}

DEFAULTS = Settings()


def _show(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _default(option: str) -> Any:
    return getattr(DEFAULTS, SETTING_OPTIONS[option][0])


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
    p.add_argument("--batch-connections", type=int, default=4, help="connections sending batches")
    p.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    p.add_argument(
        "--fanouts",
        default="10,2,1",
        help="end-to-end fan-outs, comma-separated; the first is also lag, isolation, drain's",
    )
    p.add_argument("--payload-bytes", type=int, default=256, help="padding in each event")
    p.add_argument("--baseline-threads", type=int, default=8, help="naive worker threads")
    p.add_argument(
        "--lag-rate",
        type=float,
        default=0.0,
        help="events/s offered in the lag runs (default: half the measured end-to-end maximum)",
    )
    for option in SETTING_OPTIONS:
        kind = type(_default(option))
        p.add_argument(
            "--" + option.replace("_", "-"),
            type=kind,
            default=None,
            help=f"a deviation from the default ({_default(option)})",
        )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other HOOKLINE_ setting, as a deviation (repeatable)",
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
    try:
        args.fanouts = [int(f) for f in args.fanouts.split(",") if f.strip()]
    except ValueError:
        p.error("--fanouts: comma-separated whole numbers")
    if args.runs < 1 or not args.fanouts or min(args.fanouts) < 1:
        p.error("--runs and every --fanouts are at least 1")
    for item in args.setting:
        name, sep, _ = item.partition("=")
        if not sep or not name.startswith("HOOKLINE_"):
            p.error(f"--setting {item!r}: give HOOKLINE_NAME=VALUE")
    if "e2e" in args.skip and "lag" not in args.skip and not args.lag_rate:
        p.error("--skip e2e: the lag runs need --lag-rate (half load comes from end to end)")
    if args.profile and not args.py_spy:
        p.error("--profile needs py-spy (pip install py-spy, or give --py-spy PATH)")
    args.fanout = args.fanouts[0]
    args.hanging = max(1, round(args.fanout / 10)) if args.fanout > 1 else 0
    args.effective_request_timeout_s = effective(args, "request_timeout_s")
    return args


def effective(args: argparse.Namespace, option: str) -> Any:
    """The value Hookline runs with for a setting option: the one given, or the default."""
    given = getattr(args, option, None)
    return given if given is not None else _default(option)


def deviations(args: argparse.Namespace) -> list[dict[str, str]]:
    """Each of Hookline's settings the options changed from its default."""
    found = []
    for option, names in SETTING_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            for name in names:
                found.append(
                    {
                        "setting": "HOOKLINE_" + name.upper(),
                        "value": str(value),
                        "default": str(getattr(DEFAULTS, name)),
                    }
                )
    for item in args.setting:
        name, _, value = item.partition("=")
        field = name.removeprefix("HOOKLINE_").lower()
        known = {f.name for f in dataclasses.fields(Settings)}
        default = str(getattr(DEFAULTS, field)) if field in known else "(unknown setting)"
        found.append({"setting": name, "value": value, "default": default})
    return found


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The `HOOKLINE_*` variables the deviations set."""
    env = {}
    for option, names in SETTING_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            env.update({"HOOKLINE_" + name.upper(): str(value) for name in names})
    for item in args.setting:
        name, _, value = item.partition("=")
        env[name] = value
    return env
