"""Retries, quarantine and replay on the real processes, with short schedules."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pytest
from standardwebhooks.webhooks import Webhook

from actors.middleware import QUARANTINE_QUEUE as QUARANTINE
from actors.middleware import Quarantine
from actors.registry import SUPERVISOR_QUEUES, WORKER_QUEUES
from tests.factories import eventually, make_settings
from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint, wait_for_status
from tests.receiver import Receiver
from tests.services import management_queues, queue_type

pytestmark = pytest.mark.integration


def send(api: Api, key: str, event_type: str = "order.paid", **payload: Any) -> str:
    status, event = api.call(
        "POST", "/v1/events", {"event_type": event_type, "payload": payload}, key=key
    )
    assert status == 202, event
    return str(event["id"])


def attempts_of(api: Api, key: str, delivery_id: str) -> list[dict[str, Any]]:
    status, body = api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", key=key)
    assert status == 200, body
    return sorted(body["data"], key=lambda a: a["number"])


def quarantine_copies(amqp_url: str) -> list[dict[str, Any]]:
    """Drain `hookline.quarantine` in the run's vhost and answer its documents."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        Quarantine().declare(channel, make_settings(HOOKLINE_QUEUE_TYPE=queue_type()))
        documents = []
        while True:
            method, properties, body = channel.basic_get("hookline.quarantine", auto_ack=True)
            if method is None:
                return documents
            assert properties.delivery_mode == 2, "quarantine copies must be persistent"
            documents.append(json.loads(body))
    finally:
        connection.close()


def test_a_receiver_failing_three_times_gets_the_event_on_attempt_four(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    receiver.script("/flaky", 500, 503, 502, default=200)
    endpoint = create_endpoint(api, key, receiver.url("/flaky"), retry_schedule=[1, 1, 1, 1])
    event_id = send(api, key, amount=1)

    [delivery] = wait_for_status(api, key, event_id, {"succeeded"}, 1, timeout_s=30)
    assert delivery["attempts"] == 4
    attempts = attempts_of(api, key, delivery["id"])
    assert [a["status_code"] for a in attempts] == [500, 503, 502, 200]
    assert [a["outcome"] for a in attempts] == ["failure"] * 3 + ["success"]
    assert attempts[0]["error_class"] == "http_status"
    requests = receiver.received("/flaky")
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {event_id}, "stable across retries"
    for request in requests:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.75 for gap in gaps), f"retries must wait the schedule (±20 %): {gaps}"


def test_a_receiver_that_always_fails_ends_in_quarantine_visible_in_api_and_queue(
    stack: tuple[Api, Any], receiver: Receiver, amqp_url: str
) -> None:
    api, _ = stack
    key = api.tenant()
    receiver.script("/down", default=500)
    endpoint = create_endpoint(api, key, receiver.url("/down"), retry_schedule=[1, 1])
    event_id = send(api, key)

    [delivery] = wait_for_status(api, key, event_id, {"quarantined"}, 1, timeout_s=30)
    assert delivery["attempts"] == 3
    assert delivery["quarantine_reason"] == "exhausted"
    assert delivery["last_status_code"] == 500
    status, listed = api.call("GET", f"/v1/quarantine?endpoint_id={endpoint['id']}", key=key)
    assert status == 200
    assert [d["id"] for d in listed["data"]] == [delivery["id"]]

    copies = eventually(
        lambda: [c for c in quarantine_copies(amqp_url) if c["delivery_id"] == delivery["id"]]
    )
    assert copies[0]["reason"] == "exhausted"
    assert copies[0]["endpoint_id"] == endpoint["id"]
    assert copies[0]["last_status_code"] == 500


def test_the_management_ui_shows_the_queues_their_consumers_and_the_quarantines_depth(
    stack: tuple[Api, Any], receiver: Receiver, amqp_url: str
) -> None:
    """What an operator sees in RabbitMQ's management UI, read through its HTTP API."""
    api, _ = stack
    vhost = unquote(urlsplit(amqp_url).path[1:])
    management_queues(vhost)  # reachable, or skipped (failed under CI) before any work
    key = api.tenant()
    receiver.script("/seen", default=500)
    create_endpoint(api, key, receiver.url("/seen"), retry_schedule=[1])
    wait_for_status(api, key, send(api, key), {"quarantined"}, 1, timeout_s=30)

    def once_counted() -> dict[str, Any] | None:
        """The queues once the copy is counted: figures refresh every 5 s."""
        queues = management_queues(vhost)
        return queues if queues.get(QUARANTINE, {}).get("messages", 0) >= 1 else None

    queues = eventually(once_counted, timeout_s=30, interval_s=1.0)

    expected = {QUARANTINE}
    for name in (*WORKER_QUEUES, *SUPERVISOR_QUEUES):
        expected |= {name, f"{name}.DQ", f"{name}.XQ"}
    assert set(queues) == expected
    work = {name: queues[name]["consumers"] for name in WORKER_QUEUES}
    assert all(count >= 1 for count in work.values()), f"the worker consumes each: {work}"
    assert queues[QUARANTINE]["consumers"] == 0, "copies for the operators' eyes"
    assert {q["durable"] for q in queues.values()} == {True}
    kinds = {q["arguments"].get("x-queue-type", "classic") for q in queues.values()}
    assert kinds == {queue_type()}


def test_a_quarantined_delivery_is_retried_on_request_and_recovered_by_window(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    receiver.script("/later", default=500)
    endpoint = create_endpoint(api, key, receiver.url("/later"), retry_schedule=[1])
    first, second = send(api, key, n=1), send(api, key, n=2)
    [one] = wait_for_status(api, key, first, {"quarantined"}, 1, timeout_s=30)
    wait_for_status(api, key, second, {"quarantined"}, 1, timeout_s=30)

    receiver.script("/later", default=200)
    status, body = api.call("POST", f"/v1/deliveries/{one['id']}/retry", key=key)
    assert status == 202, body
    wait_for_status(api, key, first, {"succeeded"}, 1)
    status, body = api.call("POST", f"/v1/deliveries/{one['id']}/retry", key=key)
    assert status == 409, "a succeeded delivery is not retried"

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    status, body = api.call(
        "POST", f"/v1/endpoints/{endpoint['id']}/recover", {"since": since}, key=key
    )
    assert (status, body) == (202, {"recovered": 1})
    wait_for_status(api, key, second, {"succeeded"}, 1)
    payloads = [json.loads(r.body)["data"] for r in receiver.received("/later")]
    assert payloads.count({"n": 1}) == 3 and payloads.count({"n": 2}) == 3


def test_a_410_disables_the_endpoint_and_stops_its_retries(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    receiver.script("/gone", default=410)
    endpoint = create_endpoint(api, key, receiver.url("/gone"), retry_schedule=[1, 1, 1])
    event_id = send(api, key)
    [delivery] = wait_for_status(api, key, event_id, {"quarantined"}, 1)
    assert delivery["attempts"] == 1
    _status, body = api.call("GET", f"/v1/endpoints/{endpoint['id']}", key=key)
    assert body["status"] == "disabled"
    assert "410" in body["disabled_reason"]
    alive = create_endpoint(api, key, receiver.url("/alive"))
    later = send(api, key)
    [only] = wait_for_status(api, key, later, {"succeeded"}, 1)
    assert only["endpoint_id"] == alive["id"], "a disabled endpoint receives nothing"
    assert len(receiver.received("/gone")) == 1
