"""`hookline up` with nothing configured: SQLite, in-process broker, one process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.receiver import Receiver


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Api, dict[str, str], Path]]:
    with hookline_up(tmp_path) as running:
        yield running


def up_env(port: int, **extra: str) -> dict[str, str]:
    """The environment of a `hookline up` on `port` with nothing configured but `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_BIND=f"127.0.0.1:{port}",
        HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@contextlib.contextmanager
def running_up(cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`hookline up` in `cwd`, the leader of a process group of its own, logging to `log`;
    killed (the group) if the test left it running."""
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


@contextlib.contextmanager
def hookline_up(tmp_path: Path, **extra: str) -> Iterator[tuple[Api, dict[str, str], Path]]:
    """`hookline up` with nothing configured but `extra`, in `tmp_path`; stopped cleanly."""
    port = free_port()
    env, log = up_env(port, **extra), tmp_path / "up.log"
    with running_up(tmp_path, env, log) as child:
        api = Api(f"http://127.0.0.1:{port}")
        try:
            api.wait_healthy()
            yield api, env, tmp_path
        finally:
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "running embedded" in log.read_text()


def cli(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_embedded_mode_delivers_an_event_end_to_end(
    embedded: tuple[Api, dict[str, str], Path],
) -> None:
    api, env, cwd = embedded
    tenant = cli(env, cwd, "tenants", "create", "acme")
    assert tenant["api_key"].startswith("hk_")
    assert (cwd / "var" / "hookline.db").exists()
    key = tenant["api_key"]
    with Receiver() as receiver:
        status, endpoint = api.call("POST", "/v1/endpoints", {"url": receiver.url("/e")}, key=key)
        assert status == 201, endpoint
        status, event = api.call(
            "POST", "/v1/events", {"event_type": "ping", "payload": {"n": 1}}, key=key
        )
        assert status == 202, event
        [request] = receiver.wait_for("/e", 1)
    assert Webhook(endpoint["secret"]).verify(request.body, request.headers)["data"] == {"n": 1}

    def statuses() -> list[str] | None:
        status, detail = api.call("GET", f"/v1/events/{event['id']}", key=key)
        assert status == 200
        found = [d["status"] for d in detail["deliveries"]]
        return found if found == ["succeeded"] else None

    eventually(statuses)
