"""A clean stop logs nothing at error level, whether the SIGTERM goes to each process's
leader or to its whole process group (systemd's default), for every process kind."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.factories import eventually
from tests.integration.faults import isolated_stack
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLES = ("api", "worker", "scheduler", "supervisor")
HEARTBEAT_S = 2


def loud(log: str) -> list[str]:
    """The lines of a log at error level or above, or not JSON (a traceback's, a print's)."""
    found = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            found.append(line)
            continue
        if record.get("level") in ("error", "critical", "exception"):
            found.append(line)
    return found


@pytest.mark.parametrize("to_group", [False, True], ids=["leader", "group"])
def test_a_clean_stop_logs_nothing_at_error_level(
    tmp_path: Path, receiver: Receiver, to_group: bool
) -> None:
    # Idle publishers' connections outlive missed heartbeats before the stop, as after a quiet
    # night: RabbitMQ closes them, and their next use must not log an error.
    env = {"HOOKLINE_BROKER_HEARTBEAT_S": str(HEARTBEAT_S)}
    with isolated_stack(tmp_path, roles=ROLES, **env) as (api, processes, _pg, _vhost):
        eventually(lambda: "ready for action" in processes.tail("worker", 400), 60)
        eventually(lambda: "ready for action" in processes.tail("supervisor", 400), 60)
        key = api.tenant()
        status, endpoint = api.call("POST", "/v1/endpoints", {"url": receiver.url("/q")}, key=key)
        assert status == 201, endpoint
        for n in range(5):
            api.call("POST", "/v1/events", {"event_type": "q.x", "payload": {"n": n}}, key=key)
        eventually(lambda: len(receiver.received("/q")) >= 5, 30)
        time.sleep(4 * HEARTBEAT_S)
        codes = {}
        for role in ROLES:
            child = processes.children.pop(role)
            if to_group:
                os.killpg(child.pid, signal.SIGTERM)
            else:
                os.kill(child.pid, signal.SIGTERM)
            codes[role] = child.wait(timeout=30)
    logs = {role: (tmp_path / f"{role}.log").read_text() for role in ROLES}

    assert codes == dict.fromkeys(ROLES, 0), logs
    assert {role: loud(log) for role, log in logs.items()} == {role: [] for role in ROLES}
