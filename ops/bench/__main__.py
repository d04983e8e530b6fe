"""`python -m ops.bench`: Hookline's benchmark on this machine; a table on stdout and JSON."""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ops.bench import options, plan, report
from ops.bench.context import Context, Db
from ops.bench.processes import ROOT, Api, Processes, free_port
from ops.bench.profile import Profiler
from ops.bench.services import DATABASE, VHOST, Unavailable, amqp_url_for, new_database, new_vhost
from ops.bench.watchdog import Watchdog


def stack_env(args: argparse.Namespace, pg_url: str, amqp_url: str, logs: Path) -> dict[str, str]:
    """The environment of Hookline's processes: the product's defaults, but for the deviations."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_DATABASE_URL=pg_url,
        HOOKLINE_BROKER_URL=amqp_url,
        HOOKLINE_ADMIN_TOKEN=secrets.token_urlsafe(24),
        HOOKLINE_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_WORKER_METRICS_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_SCHEDULER_METRICS_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_SUPERVISOR_METRICS_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_DATA_DIR=str(logs / "var"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(options.environment(args))
    return env


def migrate(pg_url: str) -> None:
    """Bring the benchmark database to Hookline's latest schema."""
    from engine import logs
    from engine.db.connect import bind
    from engine.db.migrations import migrate as apply
    from engine.settings import Settings

    logs.configure("warning", "json")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # purging a missing queue is fine
    database = bind(Settings.from_env({"HOOKLINE_DATABASE_URL": pg_url}))
    apply(database)
    database.close_all()


def start_receiver(processes: Processes, args: argparse.Namespace) -> list[int]:
    """Start the receiver process; answer its ports."""
    child = processes.start(
        "receiver",
        [
            "-m",
            "ops.bench.receiver",
            "--listeners",
            str(max(args.fanouts)),
            "--hang-max-s",
            str(max(4 * args.effective_request_timeout_s, 20)),
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    line = child.stdout.readline().decode()
    if not line:
        raise RuntimeError("the receiver did not start:\n" + processes.tail("receiver"))
    import json

    return [int(port) for port in json.loads(line)["ports"]]


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Set everything up, run the scenarios, tear everything down; answer the document."""
    watchdog = Watchdog(logs / "watchdog.json", DATABASE, VHOST, args.max_minutes * 60 + 300)
    with contextlib.ExitStack() as stack:
        stack.callback(watchdog.done)
        pg_url = stack.enter_context(new_database())
        vhost = stack.enter_context(new_vhost())
        amqp_url = amqp_url_for(vhost)
        migrate(pg_url)
        env = stack_env(args, pg_url, amqp_url, logs)
        processes = Processes(env, logs, on_start=watchdog.started)
        stack.callback(processes.stop_all)
        ports = start_receiver(processes, args)
        processes.role("api")
        api = Api("http://" + env["HOOKLINE_BIND"])
        api.wait_healthy()
        pg = Db(pg_url)
        stack.callback(pg.close)
        ctx = Context(
            args=args,
            processes=processes,
            api=api,
            admin_token=env["HOOKLINE_ADMIN_TOKEN"],
            pg=pg,
            pg_url=pg_url,
            amqp_url=amqp_url,
            ports=ports,
            receiver_url=f"http://127.0.0.1:{ports[0]}",
            profiler=Profiler(args.py_spy, args.profile) if args.profile else None,
        )
        return plan.run_all(ctx)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the benchmark, print the table, write the JSON."""
    args = options.parse(argv)
    command = ("python -m ops.bench " + " ".join(sys.argv[1:] if argv is None else argv)).strip()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def overdue(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the benchmark ran past --max-minutes {args.max_minutes}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(int(args.max_minutes * 60))
    logs = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    started = time.monotonic()
    try:
        document = run(args, logs)
    except Unavailable as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 3
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported, logs kept
        print(f"bench: {type(exc).__name__}: {exc}; logs kept in {logs}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        signal.alarm(0)
    document["command"] = command
    document["duration_s"] = round(time.monotonic() - started, 1)
    document["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    document["machine"]["speed_gauge_ms_at_end"] = report.speed_gauge_ms()
    plan.finish(document, args)
    if args.keep_logs:
        print(f"logs: {logs}", file=sys.stderr)
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
