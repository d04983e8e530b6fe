"""Events in, signed webhooks out: real API, worker and scheduler processes on
PostgreSQL and RabbitMQ, delivering to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import Api
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


def create_endpoint(api: Api, key: str, url: str, **fields: Any) -> dict[str, Any]:
    status, body = api.call("POST", "/v1/endpoints", {"url": url, **fields}, key=key)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def wait_for_status(
    api: Api, key: str, event_id: str, expected: set[str], count: int, timeout_s: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = api.call("GET", f"/v1/deliveries?event_id={event_id}", key=key)
        assert status == 200, body
        rows = body["data"]
        if len(rows) == count and all(row["status"] in expected for row in rows):
            return rows  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries of {event_id} never reached {expected}: {rows}")
        time.sleep(0.1)


def test_one_event_reaches_three_endpoints_signed_and_recorded(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    endpoints = [
        create_endpoint(api, key, receiver.url(f"/hook/{n}"), headers={"X-Team": f"t{n}"})
        for n in range(3)
    ]
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "invoice.paid", "payload": {"amount": 42}}, key=key
    )
    assert status == 202, event

    for n, endpoint in enumerate(endpoints):
        [request] = receiver.wait_for(f"/hook/{n}", 1)
        verified = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert verified["data"] == {"amount": 42}
        assert verified["type"] == "invoice.paid"
        assert request.headers["webhook-id"] == event["id"]
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("Hookline/")
        assert request.headers["X-Team"] == f"t{n}"

    rows = wait_for_status(api, key, event["id"], {"succeeded"}, 3)
    assert {row["endpoint_id"] for row in rows} == {e["id"] for e in endpoints}
    for row in rows:
        status, attempts = api.call("GET", f"/v1/deliveries/{row['id']}/attempts", key=key)
        assert status == 200
        [attempt] = attempts["data"]
        assert attempt["status_code"] == 200
        assert attempt["outcome"] == "success"
        assert attempt["number"] == 1
        assert attempt["duration_ms"] >= 0
        assert attempt["response_body"] == "ok"


def test_an_endpoint_subscribed_to_other_event_types_gets_nothing(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    wanted = create_endpoint(api, key, receiver.url("/orders"), event_types=["order.*"])
    create_endpoint(api, key, receiver.url("/invoices"), event_types=["invoice.paid"])
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "order.shipped", "payload": {}}, key=key
    )
    assert status == 202
    [request] = receiver.wait_for("/orders", 1)
    Webhook(wanted["secret"]).verify(request.body, request.headers)
    rows = wait_for_status(api, key, event["id"], {"succeeded"}, 1)
    assert rows[0]["endpoint_id"] == wanted["id"]
    time.sleep(0.5)
    assert receiver.received("/invoices") == []


def test_an_idempotent_repeat_is_delivered_once(stack: tuple[Api, Any], receiver: Receiver) -> None:
    api, _ = stack
    key = api.tenant()
    create_endpoint(api, key, receiver.url("/once"))
    idempotency_key = uuid.uuid4().hex
    body = {"event_type": "user.created", "payload": {"id": 7}}
    first = api.call(
        "POST", "/v1/events", body, key=key, headers={"Idempotency-Key": idempotency_key}
    )
    again = api.call(
        "POST", "/v1/events", body, key=key, headers={"Idempotency-Key": idempotency_key}
    )
    assert first[0] == 202 and again[0] == 200
    assert again[1]["id"] == first[1]["id"]
    wait_for_status(api, key, first[1]["id"], {"succeeded"}, 1)
    time.sleep(1.0)
    requests = receiver.received("/once")
    assert len(requests) == 1
    assert json.loads(requests[0].body)["data"] == {"id": 7}


def test_readiness_sees_the_database_and_the_broker(stack: tuple[Api, Any]) -> None:
    api, _ = stack
    status, body = api.call("GET", "/readyz")
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "broker": "ok"}


def test_a_burst_of_concurrent_events_is_delivered_once_each(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    # Concurrent requests share the API's commits, and their fan-out ids share messages.
    api, processes = stack
    key = api.tenant()
    endpoints = [create_endpoint(api, key, receiver.url(f"/burst/{n}")) for n in range(2)]

    def post(n: int) -> str:
        body = {"event_type": "order.paid", "payload": {"n": n}}
        status, event = api.call("POST", "/v1/events", body, key=key)
        assert status == 202, event
        return str(event["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        event_ids = list(pool.map(post, range(96)))

    for n, endpoint in enumerate(endpoints):
        got = receiver.wait_for(f"/burst/{n}", 96, timeout_s=30)
        time.sleep(0.5)  # anything sent twice would have arrived by now
        got = receiver.received(f"/burst/{n}")
        assert sorted(r.headers["webhook-id"] for r in got) == sorted(event_ids)
        for request in got:
            Webhook(endpoint["secret"]).verify(request.body, request.headers)
    for event_id in event_ids:
        wait_for_status(api, key, event_id, {"succeeded"}, 2)
    fanned = [
        line
        for line in processes.tail("worker", 100_000).splitlines()
        if '"event_fanned_out"' in line
    ]
    logged = [e for line in fanned for e in json.loads(line)["event_ids"] if e in event_ids]
    assert sorted(logged) == sorted(event_ids), "every event fanned out once"
