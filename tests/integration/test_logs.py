"""What an operator's log pipeline reads from the API: JSON lines only, gunicorn's and
uvicorn's included, a start-up line with the settings that matter (passwords masked), and one
`request` line per request, never the credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.faults import isolated_stack

pytestmark = pytest.mark.integration


def test_the_api_writes_json_lines_only_with_one_request_line_per_request(tmp_path: Path) -> None:
    with isolated_stack(tmp_path, roles=("api",)) as (api, _processes, pg_url, _vhost):
        key = api.tenant()
        status, _ = api.call(
            "POST",
            "/v1/events",
            {"event_type": "logged.once", "payload": {}},
            key=key,
            headers={"X-Request-Id": "req-logged-1"},
        )
        assert api.call("GET", "/healthz")[0] == 200
    text = (tmp_path / "api.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # JSON, each

    assert status == 202
    [starting] = [line for line in lines if line["event"] == "hookline_starting"]
    assert (starting["role"], starting["database"], starting["api_workers"]) == ("api", pg_url, 1)
    assert starting["broker"].startswith("amqp://guest:***@"), "the password masked"
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "uvicorn.error"}
    requests = [line for line in lines if line["event"] == "request"]
    [ingest] = [line for line in requests if line["path"] == "/v1/events"]
    assert {k: ingest[k] for k in ("method", "status", "request_id", "level")} == {
        "method": "POST",
        "status": 202,
        "request_id": "req-logged-1",
        "level": "info",
    }
    assert ingest["tenant_id"].startswith("ten_") and ingest["duration_ms"] > 0
    assert [line["path"] for line in requests] == ["/v1/tenants", "/v1/events"], "no probes"
    assert key not in text and "guest:guest" not in text, "never a credential"
