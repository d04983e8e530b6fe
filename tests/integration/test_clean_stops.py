"""A SIGTERM to a process group drains it, as one to its leader does: the worker, the
scheduler, `hookline up`.

systemd (`KillMode=control-group`) and `kill -TERM -PGID` signal every process of the
worker at once; dramatiq's parent forwards the signal to its worker processes too, so
each of them gets two. The attempts in flight when it arrives must still be recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.integration.faults import isolated_stack
from tests.integration.test_embedded import cli, running_up, up_env
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUEST_TIMEOUT_S = 5.0
ANSWER_AFTER_S = 2.0


def attempts_recorded(pg_url: str) -> int:
    with contextlib.closing(psycopg2.connect(pg_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM attempt")
        return int(cursor.fetchone()[0])


def send(api: Any, key: str, count: int) -> None:
    for n in range(count):
        status, body = api.call(
            "POST", "/v1/events", {"event_type": "order.paid", "payload": {"n": n}}, key=key
        )
        assert status == 202, body


def test_a_sigterm_to_the_workers_process_group_drains_the_attempts_in_flight(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/slow", default=200, delay_s=ANSWER_AFTER_S)
    with isolated_stack(
        tmp_path,
        HOOKLINE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        HOOKLINE_WORKER_PROCESSES="2",
    ) as (
        api,
        processes,
        pg_url,
        _,
    ):
        # Both worker processes booted: a signal during a process's boot reaches dramatiq's
        # own handler before Hookline's wraps it (the README says so).
        eventually(lambda: processes.tail("worker", 400).count("ready for action") >= 2, 60)
        key = api.tenant()
        status, endpoint = api.call(
            "POST", "/v1/endpoints", {"url": receiver.url("/slow")}, key=key
        )
        assert status == 201, endpoint
        send(api, key, 10)
        eventually(lambda: len(receiver.received("/slow")) >= 5, 20)  # answers due in ~2 s
        worker = processes.children["worker"]

        started = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)
        code = worker.wait(timeout=REQUEST_TIMEOUT_S + 15)
        took = time.monotonic() - started
        processes.children.pop("worker")

        log = processes.tail("worker", 400)
        assert "Killing worker process" not in log, log
        assert took <= REQUEST_TIMEOUT_S + 5, (took, log)
        assert code == 0, log
        # Every request the receiver got, the drained worker recorded as an attempt.
        assert attempts_recorded(pg_url) == len(receiver.received("/slow")), log


def test_a_sigterm_to_the_schedulers_process_group_stops_it_cleanly(tmp_path: Path) -> None:
    with isolated_stack(tmp_path, roles=("scheduler",)) as (_, processes, _, _):
        scheduler = processes.children["scheduler"]
        # Booted: its start-up line comes before its checks, "scheduler_started" after them.
        eventually(lambda: "scheduler_started" in processes.tail("scheduler", 100), 30)

        started = time.monotonic()
        os.killpg(scheduler.pid, signal.SIGTERM)
        code = scheduler.wait(timeout=20)
        took = time.monotonic() - started
        processes.children.pop("scheduler")

    assert code == 0, processes.tail("scheduler")
    assert took <= 5, took


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_a_sigterm_to_hookline_ups_process_group_drains_the_attempts_in_flight(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/slow", default=200, delay_s=ANSWER_AFTER_S)
    port = free_port()
    env = up_env(port, HOOKLINE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S))
    log = tmp_path / "up.log"
    with running_up(tmp_path, env, log) as up:
        api = Api(f"http://127.0.0.1:{port}")
        api.wait_healthy()
        key = cli(env, tmp_path, "tenants", "create", "acme")["api_key"]
        status, endpoint = api.call(
            "POST", "/v1/endpoints", {"url": receiver.url("/slow")}, key=key
        )
        assert status == 201, endpoint
        send(api, key, 10)
        eventually(lambda: len(receiver.received("/slow")) >= 5, 20)

        started = time.monotonic()
        os.killpg(up.pid, signal.SIGTERM)
        code = up.wait(timeout=REQUEST_TIMEOUT_S + 15)
        took = time.monotonic() - started

    assert code == 0, log.read_text()[-3000:]
    assert took <= REQUEST_TIMEOUT_S + 5, took
    database = tmp_path / "var" / "hookline.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        [(attempts,)] = connection.execute("SELECT count(*) FROM attempt").fetchall()
    assert attempts == len(receiver.received("/slow")), log.read_text()[-3000:]
