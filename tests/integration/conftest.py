"""Hookline's real processes against the run's PostgreSQL database and RabbitMQ vhost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.db.connect import bind
from engine.db.migrations import migrate
from ops.bench.processes import free_port
from tests.factories import ADMIN_TOKEN, SECRET_KEY, make_settings
from tests.receiver import Receiver
from tests.services import new_database, queue_type

pytestmark = pytest.mark.integration


class Api:
    """A tiny HTTP client for a running Hookline API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._local = threading.local()

    @property
    def last_headers(self) -> dict[str, str]:
        """The response headers of this thread's last call, names in lower case."""
        return getattr(self._local, "headers", {})

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self._local.headers = {k.lower(): v for k, v in response.headers.items()}
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            self._local.headers = {k.lower(): v for k, v in exc.headers.items()}
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def tenant(self, name: str = "acme") -> str:
        """Create a tenant through the admin API; answer its API key."""
        status, body = self.call("POST", "/v1/tenants", {"name": name}, key=ADMIN_TOKEN)
        assert status == 201, body
        return str(body["api_key"])

    def wait_healthy(self, timeout_s: float = 60, processes: Processes | None = None) -> None:
        """Wait for `/healthz` to answer 200; a failure shows the processes' state and the
        API's log, when `processes` started them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        seen = "" if processes is None else "\n" + processes.report("api")
        raise AssertionError(f"API at {self.base_url} not healthy within {timeout_s}s{seen}")


class Processes:
    """Starts `hookline <role>` processes with one environment and stops them all."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {"HOOKLINE_DATA_DIR": str(logs / "var"), **env}
        self.logs = logs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, role: str, *args: str, name: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        name = name or role
        log = open(self.logs / f"{name}.log", "ab")
        child = subprocess.Popen(
            [sys.executable, "-m", "api.cli", role, *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children[name] = child
        return child

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        child = self.children.pop(name)
        if child.poll() is None:
            # A graceful signal goes to the leader only, as a process manager sends it: it
            # forwards it to its children (dramatiq, gunicorn). SIGKILL takes the whole group.
            if sig == signal.SIGKILL:
                os.killpg(child.pid, sig)
            else:
                os.kill(child.pid, sig)
        try:
            return child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            return child.wait()
        finally:
            _kill_group(child.pid)

    def stop_all(self) -> None:
        for name in list(self.children):
            self.stop(name)

    def report(self, *names: str) -> str:
        """Each process's exit status (None: running), then these processes' log tails."""
        codes = {name: child.poll() for name, child in self.children.items()}
        tails = "".join(f"\n-- {name}.log:\n{self.tail(name)}" for name in names)
        return f"exit codes: {codes}{tails}"

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def _kill_group(pgid: int) -> None:
    """Leave no stray process of a stopped role behind (a fork that outlived its parent)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stack_env(pg_url: str, amqp_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_DATABASE_URL=pg_url,
        HOOKLINE_BROKER_URL=amqp_url,
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
        HOOKLINE_SECRET_KEY=SECRET_KEY,
        HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_WORKER_PROCESSES="1",
        HOOKLINE_WORKER_THREADS="16",
        HOOKLINE_API_WORKERS="1",
        # Several stacks share the test server's 100 connections: keep each pool small.
        HOOKLINE_DB_MAX_CONNECTIONS="6",
        HOOKLINE_REQUEST_TIMEOUT_S="5",
        HOOKLINE_CONNECT_TIMEOUT_S="2",
        HOOKLINE_SCHEDULER_INTERVAL_S="0.2",
        HOOKLINE_LOG_FORMAT="json",
        HOOKLINE_QUEUE_TYPE=queue_type(),
        HOOKLINE_WORKER_METRICS_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_SCHEDULER_METRICS_BIND=f"127.0.0.1:{free_port()}",
        HOOKLINE_SUPERVISOR_METRICS_BIND=f"127.0.0.1:{free_port()}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def pg(pg_migrated: str) -> Iterator[Any]:
    """The run's PostgreSQL database, bound and connected on this thread, for one module."""
    database = bind(make_settings(HOOKLINE_DATABASE_URL=pg_migrated))
    database.connect(reuse_if_open=True)
    yield database
    database.close_all()


@contextlib.contextmanager
def private_database(suffix: str) -> Iterator[Any]:
    """A migrated database of its own, bound and connected on this thread: the run's shared
    one has the session stack's live scheduler taking due, throttled and lost rows."""
    with new_database(suffix) as url:
        database = bind(make_settings(HOOKLINE_DATABASE_URL=url))
        migrate(database)
        database.connect(reuse_if_open=True)
        try:
            yield database
        finally:
            database.close_all()


@contextlib.contextmanager
def running_stack(
    pg_url: str, amqp_url: str, logs: Path, **extra: str
) -> Iterator[tuple[Api, Processes]]:
    """`hookline api`, `hookline worker` and `hookline scheduler` with `stack_env(**extra)`,
    running until the block ends."""
    port = free_port()
    env = stack_env(pg_url, amqp_url, HOOKLINE_BIND=f"127.0.0.1:{port}", **extra)
    processes = Processes(env, logs)
    for role in ("api", "worker", "scheduler"):
        processes.start(role)
    api = Api(f"http://127.0.0.1:{port}")
    try:
        api.wait_healthy(processes=processes)
        yield api, processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def stack(
    pg_migrated: str, amqp_url: str, tmp_path_factory: Any
) -> Iterator[tuple[Api, Processes]]:
    """`hookline api`, `hookline worker` and `hookline scheduler`, shared by the tests."""
    with running_stack(pg_migrated, amqp_url, tmp_path_factory.mktemp("stack-logs")) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
