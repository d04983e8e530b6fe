"""What an operator's log pipeline reads: JSON lines only from every process (gunicorn's and
uvicorn's included), a start-up line with the settings that matter (passwords masked), one
`request` line per API request (never the credential), and nothing at error level from a
clean stop, whether the SIGTERM goes to a process's leader or to its whole group (systemd's
default), even after idle publishers' connections missed their heartbeats."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.integration.faults import isolated_stack
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLES = ("api", "worker", "scheduler", "supervisor")
HEARTBEAT_S = 2
# Each role's second process, stopped through its group: its own ports.
OWN_PORTS = {
    "api": "HOOKLINE_BIND",
    "worker": "HOOKLINE_WORKER_METRICS_BIND",
    "scheduler": "HOOKLINE_SCHEDULER_METRICS_BIND",
    "supervisor": "HOOKLINE_SUPERVISOR_METRICS_BIND",
}


def loud(log: str) -> list[str]:
    """A log's lines at error level or above, and those that are not JSON (a traceback's)."""
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


def test_every_process_logs_json_lines_and_a_clean_stop_nothing_at_error_level(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Idle publishers' connections outlive missed heartbeats before the stop, as after a quiet
    # night: RabbitMQ closes them, and their next use must not log an error.
    env = {"HOOKLINE_BROKER_HEARTBEAT_S": str(HEARTBEAT_S)}
    with isolated_stack(tmp_path, roles=ROLES, **env) as (api, processes, pg_url, _vhost):
        ports = {role: f"127.0.0.1:{free_port()}" for role in ROLES}
        for role in ROLES:
            processes.start(role, name=f"{role}-group", env={OWN_PORTS[role]: ports[role]})
        other = Api(f"http://{ports['api']}")
        other.wait_healthy(processes=processes)
        for name in ("worker", "worker-group", "supervisor", "supervisor-group"):
            eventually(lambda name=name: "ready for action" in processes.tail(name, 400), 60)
        key = api.tenant()
        status, endpoint = api.call("POST", "/v1/endpoints", {"url": receiver.url("/l")}, key=key)
        assert status == 201, endpoint
        sent = [
            through.call(
                "POST",
                "/v1/events",
                {"event_type": "logged.once", "payload": {"n": n}},
                key=key,
                headers={"X-Request-Id": f"req-logged-{n}"},
            )[0]
            for n, through in enumerate([api, other] * 3)
        ]
        eventually(lambda: len(receiver.received("/l")) >= 6, 30)
        assert api.call("GET", "/healthz")[0] == 200
        time.sleep(4 * HEARTBEAT_S)
        codes = {name: stop(processes, name) for name in list(processes.children)}
    logs = {path.stem: path.read_text() for path in tmp_path.glob("*.log")}

    assert sent == [202] * 6
    assert codes == dict.fromkeys(codes, 0) and len(codes) == 8, logs
    assert {name: loud(log) for name, log in logs.items()} == {name: [] for name in logs}
    assert_api_log(logs["api"], key, pg_url)


def stop(processes: Any, name: str) -> int:
    """SIGTERM to the process's leader, or to its whole group for the `-group` ones."""
    child = processes.children.pop(name)
    if name.endswith("-group"):
        os.killpg(child.pid, signal.SIGTERM)
    else:
        os.kill(child.pid, signal.SIGTERM)
    return int(child.wait(timeout=30))


def assert_api_log(text: str, key: str, pg_url: str) -> None:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    [starting] = [line for line in lines if line["event"] == "hookline_starting"]
    assert (starting["role"], starting["database"], starting["api_workers"]) == ("api", pg_url, 1)
    assert starting["broker"].startswith("amqp://guest:***@"), "the password masked"
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "uvicorn.error"}
    requests = [line for line in lines if line["event"] == "request"]
    [ingest, *_] = [line for line in requests if line["path"] == "/v1/events"]
    assert {k: ingest[k] for k in ("method", "status", "request_id", "level")} == {
        "method": "POST",
        "status": 202,
        "request_id": "req-logged-0",
        "level": "info",
    }
    assert ingest["tenant_id"].startswith("ten_") and ingest["duration_ms"] > 0
    assert "/healthz" not in {line["path"] for line in requests}, "probes at debug only"
    assert key not in text and "guest:guest" not in text, "never a credential"
