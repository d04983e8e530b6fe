"""`hookline up` killed -9 mid-flow: every event it accepted is delivered after a restart,
at once, not when the leases of its lost in-process messages run out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.integration.test_embedded import cli, running_up, up_env
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq, pytest.mark.slow]

EVENTS = 60
# Far below every lease a lost message leaves behind (fan-out 30 s, claims 60 s, queue 300 s).
RESUME_BOUND_S = 20.0


def delivered(receiver: Receiver) -> set[int]:
    return {json.loads(r.body)["data"]["n"] for r in receiver.received("/hook")}


def test_after_a_kill_9_every_accepted_event_is_delivered_soon_after_the_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/hook", default=200, delay_s=0.3)  # keeps attempts in flight
    port = free_port()
    env = up_env(port, HOOKLINE_WORKER_THREADS="4")
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
