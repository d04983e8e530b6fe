"""`hookline up` killed -9 mid-flow: every event it accepted is delivered after a restart,
at once, not when the leases of its lost in-process messages run out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.integration.test_embedded import cli
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

EVENTS = 60
# Far below every lease a lost message leaves behind (fan-out 30 s, claims 60 s, queue 300 s).
RESUME_BOUND_S = 20.0


@contextlib.contextmanager
def running_up(cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield up
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def delivered(receiver: Receiver) -> set[int]:
    return {json.loads(r.body)["data"]["n"] for r in receiver.received("/hook")}


def test_after_a_kill_9_every_accepted_event_is_delivered_soon_after_the_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/hook", default=200, delay_s=0.3)  # keeps attempts in flight
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_BIND=f"127.0.0.1:{port}",
        HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_LOG_FORMAT="json",
        HOOKLINE_WORKER_THREADS="4",
        PYTHONUNBUFFERED="1",
    )
    api, log = Api(f"http://127.0.0.1:{port}"), tmp_path / "up.log"
    accepted: set[int] = set()
    with running_up(tmp_path, env, log) as up:
        api.wait_healthy()
        key = cli(env, tmp_path, "tenants", "create", "acme")["api_key"]
        status, endpoint = api.call(
            "POST", "/v1/endpoints", {"url": receiver.url("/hook")}, key=key
        )
        assert status == 201, endpoint
        for n in range(EVENTS):
            status, body = api.call(
                "POST", "/v1/events", {"event_type": "order.paid", "payload": {"n": n}}, key=key
            )
            assert status == 202, body
            accepted.add(n)
        eventually(lambda: len(receiver.received("/hook")) >= 5, 20)
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    before = delivered(receiver)
    assert accepted - before, "everything was delivered before the kill: nothing to resume"

    with running_up(tmp_path, env, log):
        restarted = time.monotonic()
        eventually(lambda: accepted <= delivered(receiver), RESUME_BOUND_S + 30)
        took = time.monotonic() - restarted

    assert took <= RESUME_BOUND_S, (took, log.read_text()[-3000:])
    assert "unfinished_work_resumed" in log.read_text()
    print(f"restart to last delivery: {took:.1f} s ({len(accepted - before)} events left)")
