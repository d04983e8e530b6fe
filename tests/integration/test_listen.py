"""`hookline listen` against a running Hookline (`hookline up`): a temporary endpoint on this
machine, each delivery printed with its signature verified, forwarded to a local app whose
answer Hookline gets, and the endpoint deleted when it stops."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


def test_listen_prints_verified_deliveries_forwards_them_and_deletes_its_endpoint(
    tmp_path: Path,
) -> None:
    with hookline_up(tmp_path) as (api, env, cwd), Receiver() as app:
        app.script("/hooks", 503, default=201)  # the local app fails once: Hookline retries
        key = cli(env, cwd, "tenants", "create", "acme")["api_key"]
        command = ["listen", "--events", "invoice.*", "--count", "2", "--json"]
        listening = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *command, "--forward-to", app.url("/hooks")],
            env={**env, "HOOKLINE_API_URL": api.base_url, "HOOKLINE_API_KEY": key},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert listening.stderr is not None
        first = listening.stderr.readline()
        found = re.search(r"for endpoint (\S+?),", first)
        assert found, first
        endpoint_id = found.group(1)
        sent = []
        for event_type in ("order.ignored", "invoice.paid"):
            status, event = api.call(
                "POST", "/v1/events", {"event_type": event_type, "payload": {"n": 1}}, key=key
            )
            assert status == 202, event
            sent.append(event["id"])
        out, err = listening.communicate(timeout=90)
        status, _ = api.call("GET", f"/v1/endpoints/{endpoint_id}", key=key)

    assert listening.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["type"], d["webhook_id"], d["verified"]) for d in lines] == [
        ("invoice.paid", sent[1], True),
        ("invoice.paid", sent[1], True),
    ], "only what its event types match, verified with the endpoint's secret"
    assert lines[0]["body"]["data"] == {"n": 1}
    assert [d["forwarded"]["status"] for d in lines] == [503, 201], "the app's answers, retried"
    forwarded = [{k.lower(): v for k, v in r.headers.items()} for r in app.received("/hooks")]
    assert [h["webhook-id"] for h in forwarded] == [sent[1]] * 2, "headers and all"
    assert all(h["webhook-signature"].startswith("v1,") for h in forwarded)
    assert f"deleted the temporary endpoint {endpoint_id}" in err
    assert status == 404
