"""`/metrics` of the API, the workers and the scheduler after real traffic."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from tests.factories import eventually
from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint, wait_for_status
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


SCHEDULER_ONLY = (
    "hookline_scheduler_leader",
    "hookline_scheduled_backlog",
    "hookline_due_backlog",
    "hookline_quarantine_size",
    "hookline_throttled_deliveries",
    "hookline_breakers",
    "hookline_endpoint_concurrency_limit",
)


def scrape(bind: str) -> str:
    with urllib.request.urlopen(f"http://{bind}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


def test_every_process_exposes_its_metrics_after_a_delivery(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, processes = stack
    key = api.tenant()
    create_endpoint(api, key, receiver.url("/metered"))
    status, event = api.call("POST", "/v1/events", {"event_type": "m.x", "payload": {}}, key=key)
    assert status == 202
    wait_for_status(api, key, event["id"], {"succeeded"}, 1)

    api_text = scrape(api.base_url.removeprefix("http://"))
    assert samples(api_text, 'hookline_http_requests_total{method="POST",route="/v1/events"')
    assert samples(api_text, 'hookline_events_ingested_total{result="created"}')
    assert samples(api_text, "hookline_http_request_duration_seconds_bucket")

    worker_text = scrape_until(
        processes.env["HOOKLINE_WORKER_METRICS_BIND"],
        'hookline_attempts_total{result="success",status_class="2xx"}',
    )
    for name in (
        "hookline_attempt_duration_seconds_bucket",
        'hookline_deliveries_total{outcome="succeeded"}',
        "hookline_delivery_lag_seconds_bucket",
    ):
        assert samples(worker_text, name), name
    for line in samples(worker_text, "hookline_"):
        assert "endpoint" not in line and "tenant" not in line and "http://" not in line
    for text in (api_text, worker_text):  # the scheduler's alone: elsewhere they would read 0
        assert not [line for name in SCHEDULER_ONLY for line in samples(text, name)]

    scheduler_text = scrape_until(
        processes.env["HOOKLINE_SCHEDULER_METRICS_BIND"], "hookline_scheduler_leader 1.0"
    )
    for name in ("hookline_scheduled_backlog", "hookline_due_backlog", "hookline_quarantine_size"):
        assert samples(scheduler_text, name), name
    assert samples(scheduler_text, "hookline_breakers")


def scrape_until(bind: str, wanted: str) -> str:
    """Scrape until a sample starting with `wanted` shows up (the scheduler updates gauges)."""

    def probe() -> str | None:
        try:
            text = scrape(bind)
        except OSError:  # the exposition process may still be starting
            return None
        return text if samples(text, wanted) else None

    return str(eventually(probe))
