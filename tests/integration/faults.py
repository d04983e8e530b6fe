"""Helpers for fault tests: an isolated stack per test, optionally behind proxies."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from engine.db.connect import bind
from engine.db.migrations import migrate
from tests.factories import make_settings
from tests.integration.conftest import Api, Processes, free_port, stack_env
from tests.proxy import Proxy
from tests.services import amqp_url_for, new_database, new_vhost


@contextlib.contextmanager
def isolated_stack(
    logs: Path,
    *,
    roles: tuple[str, ...] = ("api", "worker", "scheduler"),
    pg_proxy: Proxy | None = None,
    amqp_proxy: Proxy | None = None,
    **env: str,
) -> Iterator[tuple[Api, Processes, str, str]]:
    """A database and vhost of its own, with Hookline's processes reaching them,
    through the proxies when given. Yields (api, processes, pg_url, vhost)."""
    suffix = "_" + uuid.uuid4().hex[:6]
    with new_database(suffix) as pg_url, new_vhost(suffix) as vhost:
        database = bind(make_settings(HOOKLINE_DATABASE_URL=pg_url))
        migrate(database)
        database.close_all()
        via_pg = _through(pg_url, pg_proxy)
        via_amqp = amqp_url_for(vhost, amqp_proxy.url_host if amqp_proxy else "127.0.0.1:5672")
        port = free_port()
        full_env = stack_env(via_pg, via_amqp, HOOKLINE_BIND=f"127.0.0.1:{port}", **env)
        processes = Processes(full_env, logs)
        for role in roles:
            processes.start(role)
        api = Api(f"http://127.0.0.1:{port}")
        try:
            if "api" in roles:
                api.wait_healthy(processes=processes)
            yield api, processes, pg_url, vhost
        finally:
            processes.stop_all()


def _through(url: str, proxy: Proxy | None) -> str:
    if proxy is None:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = proxy.url_host if len(netloc) == 1 else f"{netloc[0]}@{proxy.url_host}"
    return urlunsplit(parts._replace(netloc=host))


def delivery_states(pg_url: str) -> dict[str, int]:
    """How many deliveries are in each state, read straight from PostgreSQL."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, count(*) FROM delivery GROUP BY status")
            return {status: count for status, count in cursor.fetchall()}


def attempt_kinds(pg_url: str) -> list[tuple[int, str | None, int]]:
    """How the attempts ended, by attempt number and error class: what a failure reports."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT number, error_class, count(*) FROM attempt"
                " GROUP BY number, error_class ORDER BY number, error_class"
            )
            return [(number, kind, count) for number, kind, count in cursor.fetchall()]


def wait_all_succeeded(pg_url: str, expected: int, timeout_s: float = 90) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = delivery_states(pg_url)
        if states.get("succeeded", 0) >= expected:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{expected} deliveries expected to succeed; states: {states};"
                f" attempts (number, error class, count): {attempt_kinds(pg_url)}"
            )
        time.sleep(0.25)


def send_events(api: Api, key: str, count: int, *, threads: int = 4, **fields: Any) -> list[str]:
    """POST `count` events from a few threads; every one must be accepted (202)."""

    def one(n: int) -> str:
        status, body = api.call(
            "POST", "/v1/events", {"event_type": "load.test", "payload": {"n": n}}, key=key
        )
        assert status == 202, (status, body)
        return str(body["id"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def group_rss_kib(pid: int) -> int:
    """Resident memory of every process in the process group led by `pid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            if pgrp != pid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def unacked_messages(vhost: str) -> dict[str, tuple[int, int]]:
    """Per queue: (ready, unacknowledged) messages, from rabbitmqctl."""
    done = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return {name: (int(ready), int(unacked)) for name, ready, unacked in rows}


class Timer(threading.Thread):
    """Runs `action` after `delay_s` on its own thread."""

    def __init__(self, delay_s: float, action: Any) -> None:
        super().__init__(daemon=True)
        self.delay_s = delay_s
        self.action = action

    def run(self) -> None:
        time.sleep(self.delay_s)
        self.action()
