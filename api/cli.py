"""The `hookline` command: migrate, tenants, api, worker, scheduler, supervisor, up."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from api import cli_checks, cli_listen, cli_remote, cli_tenants
from engine import __version__, logs
from engine.db.connect import bind
from engine.db.migrations import migrate
from engine.errors import EngineError, SettingsError
from engine.settings import Settings

log = structlog.get_logger("hookline.start")

GUNICORN_CONF = Path(__file__).resolve().parents[1] / "ops" / "gunicorn.conf.py"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; answer the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):  # no command, or a group without its subcommand
        getattr(args, "group", parser).print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"hookline: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        return int(args.handler(settings, args) or 0)
    except EngineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline",
        description="Hookline webhook delivery engine",
        epilog="Every command takes its configuration from HOOKLINE_* environment variables"
        " (the README's Configuration section lists them): HOOKLINE_DATABASE_URL and"
        " HOOKLINE_BROKER_URL first; without a broker `hookline up` runs all in one process.",
    )
    parser.add_argument("--version", action="version", version=f"hookline {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        handler=_migrate
    )
    tenants = commands.add_parser("tenants", help="manage tenants")
    tenants.set_defaults(group=tenants)
    tenant_commands = tenants.add_subparsers(dest="tenant_command")
    create = tenant_commands.add_parser("create", help="create a tenant and print its API key")
    create.add_argument("name")
    create.set_defaults(handler=_create_tenant)
    cli_tenants.add_commands(tenant_commands)
    listing = tenant_commands.add_parser(
        "event-types", help="list a tenant's event types, their schema versions and strict mode"
    )
    listing.add_argument("tenant_id")
    listing.add_argument("--archived", choices=("true", "false"), default=None)
    listing.set_defaults(handler=_list_event_types)
    replays = commands.add_parser("replays", help="follow and stop replays, of every tenant")
    replays.set_defaults(group=replays)
    replay_commands = replays.add_subparsers(dest="replays_command")
    replay_commands.add_parser(
        "running", help="the running replays, backfills and recovers, with their progress"
    ).set_defaults(handler=_running_replays)
    cancel = replay_commands.add_parser("cancel", help="stop a replay: what is not queued stays")
    cancel.add_argument("replay_id")
    cancel.set_defaults(handler=_cancel_replay)
    secrets = commands.add_parser("secrets", help="manage the encryption of endpoint secrets")
    secrets.set_defaults(group=secrets)
    secret_commands = secrets.add_subparsers(dest="secrets_command")
    rotate_key = secret_commands.add_parser(
        "rotate-key",
        help="re-encrypt every endpoint secret, custom header and tenant alert-channel "
        "secret with HOOKLINE_SECRET_KEY "
        "(older keys in HOOKLINE_SECRET_KEY_PREVIOUS); safe to repeat",
    )
    rotate_key.add_argument("--batch", type=int, default=500, help="rows per transaction")
    rotate_key.set_defaults(handler=_rotate_key)
    commands.add_parser("api", help="serve the REST API (gunicorn)").set_defaults(handler=_api)
    commands.add_parser("worker", help="run delivery workers (dramatiq)").set_defaults(
        handler=_worker
    )
    commands.add_parser("scheduler", help="publish due and lost deliveries").set_defaults(
        handler=_scheduler
    )
    commands.add_parser(
        "supervisor",
        help="fold outcomes into circuit breakers and send alerts (run two or more, for failover)",
    ).set_defaults(handler=_supervisor)
    commands.add_parser("up", help="run everything on this host").set_defaults(handler=_up)
    cli_listen.add_command(commands)
    cli_remote.add_commands(commands)
    return parser


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = migrate(bind(settings))
    print(json.dumps({"applied": applied}))
    return 0


def _create_tenant(settings: Settings, args: argparse.Namespace) -> int:
    from api import views
    from engine.tenancy.tenants import create_tenant

    name = args.name.strip()
    if not 1 <= len(name) <= 128:
        print("hookline: a tenant name is 1 to 128 characters", file=sys.stderr)
        return 2
    database = bind(settings)
    migrate(database)
    with database.connection_context():
        tenant, api_key = create_tenant(name)
    print(json.dumps(views.tenant(tenant, api_key)))
    return 0


def _list_event_types(settings: Settings, args: argparse.Namespace) -> int:
    from api import views
    from engine.events import catalog
    from engine.tenancy.tenants import find_tenant

    archived = None if args.archived is None else args.archived == "true"
    with bind(settings).connection_context():
        if find_tenant(args.tenant_id) is None:
            print(f"hookline: no tenant {args.tenant_id}", file=sys.stderr)
            return 2
        found, cursor = [], None
        while True:
            page = catalog.list_event_types(
                args.tenant_id, limit=200, cursor=cursor, archived=archived
            )
            found += [views.event_type(row) for row in page.items]
            if (cursor := page.next_cursor) is None:
                break
        strict = catalog.strict_mode(args.tenant_id)
    print(json.dumps({"strict_event_types": strict, "event_types": found}, ensure_ascii=False))
    return 0


def _running_replays(settings: Settings, args: argparse.Namespace) -> int:
    from api import views
    from engine.replays import replays

    with bind(settings).connection_context():
        running = [
            {"tenant_id": p.replay.tenant_id, **views.replay(p)}
            for p in replays.progress_many(replays.running())
        ]
    print(json.dumps({"replays": running}))
    return 0


def _cancel_replay(settings: Settings, args: argparse.Namespace) -> int:
    from api import views
    from engine.errors import ConflictError, NotFoundError
    from engine.replays import replays

    with bind(settings).connection_context():
        try:
            row = replays.cancel_any(args.replay_id)
        except (NotFoundError, ConflictError) as exc:
            print(f"hookline: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(views.replay(replays.progress(row))))
    return 0


def _rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    from engine import secretbox
    from engine.endpoints import secrets as endpoint_secrets
    from engine.tenancy import oauth, tenants

    if not 1 <= args.batch <= 10_000:
        print("hookline: --batch is 1 to 10000", file=sys.stderr)
        return 2
    box = secretbox.from_settings(settings)
    database = bind(settings)
    migrate(database)
    with database.connection_context():
        report = endpoint_secrets.reseal_all(box, batch=args.batch)
        channels = tenants.reseal_alert_channels(box, batch=args.batch)
        signing = oauth.reseal_keys(box)
    found = {**dataclasses.asdict(report), **dataclasses.asdict(channels)}
    print(json.dumps({"key_id": box.key_id, **found, "oauth_keys_resealed": signing}))
    return 0


def _api(settings: Settings, args: argparse.Namespace) -> int:
    if settings.broker_url is None or settings.database_url is None:
        raise SettingsError(
            "HOOKLINE_BROKER_URL",
            "`hookline api` needs PostgreSQL and RabbitMQ; `hookline up` runs embedded",
        )
    cli_checks.before_start(settings, "api")
    _multiprocess_metrics(settings, "api")
    command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF)]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from actors.registry import WORKER_QUEUES

    # Dramatiq reads its own knobs from the environment: no message waits in worker RAM
    # beyond what the threads can take.
    os.environ["dramatiq_queue_prefetch"] = str(settings.worker_threads)
    return _run_dramatiq(
        settings,
        "worker",
        "actors.worker:setup",
        WORKER_QUEUES,
        processes=settings.worker_processes,
        threads=settings.worker_threads,
        metrics="actors.metrics:serve_worker_metrics",
    )


def _supervisor(settings: Settings, args: argparse.Namespace) -> int:
    """One dramatiq process, one thread, consuming outcomes and alerts beside its peers."""
    from actors.registry import SUPERVISOR_QUEUES

    return _run_dramatiq(
        settings,
        "supervisor",
        "actors.supervisor:setup",
        SUPERVISOR_QUEUES,
        processes=1,
        threads=1,
        metrics="actors.metrics:serve_supervisor_metrics",
    )


def _run_dramatiq(
    settings: Settings,
    role: str,
    setup: str,
    queues: Sequence[str],
    *,
    processes: int,
    threads: int,
    metrics: str,
) -> int:
    """Replace this process with dramatiq's (`setup` builds its broker), plus a metrics fork."""
    if settings.broker_url is None:
        raise SettingsError("HOOKLINE_BROKER_URL", f"`hookline {role}` needs RabbitMQ")
    cli_checks.before_start(settings, role)
    _multiprocess_metrics(settings, role)
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        setup,
        "--queues",
        *queues,
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--worker-shutdown-timeout",
        str(int((settings.request_timeout_s + 15) * 1000)),
        "--skip-logging",
        "--fork",
        metrics,
    ]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover


def _scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from actors import scheduler as scheduling
    from actors.metrics import serve

    if settings.broker_url is None:
        raise SettingsError("HOOKLINE_BROKER_URL", "`hookline scheduler` needs RabbitMQ")
    cli_checks.before_start(settings, "scheduler", secret_key=False)
    scheduler = scheduling.build(settings)
    try:
        serve(settings.scheduler_metrics_bind)
    except OSError as exc:
        raise SettingsError("HOOKLINE_SCHEDULER_METRICS_BIND", f"cannot listen: {exc}") from exc
    _stop_on_signals(scheduler.stop.set)
    scheduler.run()
    return 0


def _multiprocess_metrics(settings: Settings, role: str) -> None:
    """Point prometheus-client's multiprocess mode at a wiped directory of this role's.

    Set before the processes that import prometheus-client start, as it requires.
    """
    directory = Path(settings.data_dir).resolve() / "prometheus" / role
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    if settings.broker_url is None:
        return _up_embedded(settings)
    migrate(bind(settings))
    children = [
        subprocess.Popen([sys.executable, "-m", "api.cli", role])
        for role in ("api", "worker", "scheduler", "supervisor")
    ]
    stopping = threading.Event()

    def stop() -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.terminate()

    _stop_on_signals(stop)
    while not stopping.is_set():
        if any(child.poll() is not None for child in children):
            stop()
            break
        stopping.wait(0.5)
    return max(_wait(child) for child in children)


def _this_command() -> str:
    """How to run `hookline` again as this process was run: under tox the script is not on
    the PATH, so its path (relative to here when inside); `python -m api.cli` when so run."""
    script = Path(sys.argv[0])
    if script.name != "hookline":
        return f"{Path(sys.executable).name} -m api.cli"
    if shutil.which("hookline") == str(script.resolve()):
        return "hookline"
    try:
        return str(script.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _wait(child: subprocess.Popen[Any]) -> int:
    try:
        return abs(child.wait(timeout=60))
    except subprocess.TimeoutExpired:
        child.kill()
        return abs(child.wait())


def _up_embedded(settings: Settings) -> int:
    from api import embedded

    log.info("hookline_starting", **cli_checks.starting_line(settings, "up"))
    hookline = embedded.start(settings)
    database = (settings.database_url and "PostgreSQL") or settings.effective_database_url
    print(
        f"Hookline {__version__} running embedded: database {database}, in-process broker, "
        f"API, workers, scheduler and supervisor in this process.\n"
        f"API: {hookline.url}   (create a tenant: {_this_command()} tenants create NAME)\n"
        "Set HOOKLINE_DATABASE_URL and HOOKLINE_BROKER_URL for PostgreSQL and RabbitMQ. "
        "Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    server = threading.Thread(target=hookline.serve_forever, name="api", daemon=True)
    server.start()
    stopped = threading.Event()
    _stop_on_signals(stopped.set)
    stopped.wait()
    print("Hookline stopping…", file=sys.stderr, flush=True)
    hookline.stop()
    return 0


def _stop_on_signals(callback: Any) -> None:
    def handle(signum: int, frame: Any) -> None:
        callback()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


if __name__ == "__main__":
    sys.exit(main())
