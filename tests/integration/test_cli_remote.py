"""`hookline` over the API, as a person and a script use it, against a running API process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Api, free_port
from tests.integration.test_tenant_lifecycle import new_tenant

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def hookline(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_tenants_work_from_the_command_line(stack: tuple[Api, Any]) -> None:
    api, _ = stack
    _tenant_id, key = new_tenant(api, "cli")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
        "HOOKLINE_API_URL": api.base_url,
        "HOOKLINE_API_KEY": key,
        "HOOKLINE_PROFILE": "/nonexistent/profile.json",
    }

    created = as_json(
        hookline(
            env,
            "endpoints",
            "create",
            "--url",
            "https://example.com/h",
            "--event-type",
            "invoice.*",
            "--json",
        )
    )
    listed = hookline(env, "endpoints", "list")
    shown = hookline(env, "endpoints", "get", created["id"])
    sent = as_json(hookline(env, "send", "invoice.paid", "--data", '{"amount": 42}', "--json"))
    event = as_json(hookline(env, "events", "get", sent["id"], "--json"))
    declared = as_json(hookline(env, "event-types", "create", "invoice.paid", "--json"))
    issued = as_json(
        hookline(env, "keys", "create", "--scope", "events:write", "--name", "ci", "--json")
    )
    missing = hookline(env, "endpoints", "get", "ep_01AAAAAAAAAAAAAAAAAAAAAAAA")
    invalid = hookline(env, "endpoints", "create", "--url", "ftp://example.com/h")
    refused = hookline({**env, "HOOKLINE_API_KEY": "hk_wrong"}, "endpoints", "list")
    down = hookline({**env, "HOOKLINE_API_URL": f"http://127.0.0.1:{free_port()}"}, "keys", "list")
    bad_json = hookline(env, "send", "a.b", "--data", "{nope")

    assert created["secret"].startswith("whsec_")
    assert listed.returncode == 0 and created["id"] in listed.stdout
    assert listed.stdout.splitlines()[0].split()[:3] == ["ID", "URL", "STATUS"]
    assert "id" in shown.stdout and "https://example.com/h" in shown.stdout
    assert (event["event_type"], event["payload"]) == ("invoice.paid", {"amount": 42})
    assert declared["name"] == "invoice.paid"
    assert issued["api_key"].startswith("hk_") and issued["scopes"] == ["events:write"]
    assert (missing.returncode, refused.returncode, invalid.returncode) == (3, 4, 5)
    assert missing.stderr.count("\n") == 1 and "HTTP 404" in missing.stderr, "one line"
    assert "(field url)" in invalid.stderr
    assert down.returncode == 6 and "no answer" in down.stderr
    assert bad_json.returncode == 2 and "--data is not JSON" in bad_json.stderr
