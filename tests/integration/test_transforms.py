"""Transformations on the real processes: PostgreSQL, RabbitMQ, and a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint, wait_for_status
from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

SLACK = {
    "jmespath": "{text: join('', ['Invoice ', data.invoice, ' paid']),"
    " channel: endpoint.metadata.channel}"
}


def attempts_of(api: Api, key: str, delivery_id: str) -> list[dict[str, Any]]:
    status, body = api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", key=key)
    assert status == 200, body
    return body["data"]  # type: ignore[no-any-return]


def test_a_transformed_body_arrives_signed_over_its_exact_bytes_and_is_logged(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    endpoint = create_endpoint(
        api, key, receiver.url("/slack"), transform=SLACK, metadata={"channel": "#billing"}
    )
    status, event = api.call(
        "POST",
        "/v1/events",
        {"event_type": "invoice.paid", "payload": {"invoice": "INV-7"}},
        key=key,
    )
    assert status == 202, event

    [request] = receiver.wait_for("/slack", 1)
    assert request.body == b'{"text":"Invoice INV-7 paid","channel":"#billing"}'
    # The receiver's own check, over the bytes it got: the signature covers the transformed body.
    verified = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert verified == {"text": "Invoice INV-7 paid", "channel": "#billing"}
    assert request.headers["webhook-id"] == event["id"]

    [delivery] = wait_for_status(api, key, event["id"], {"succeeded"}, 1)
    [attempt] = attempts_of(api, key, delivery["id"])
    assert attempt["request_body"] == request.body.decode()
    assert attempt["transformed"] is True


def test_a_transform_error_is_quarantined_without_retries_while_another_endpoint_succeeds(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    broken = create_endpoint(
        api, key, receiver.url("/broken"), transform={"jmespath": "data.missing"}
    )
    plain = create_endpoint(api, key, receiver.url("/plain"))
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "invoice.paid", "payload": {"invoice": "1"}}, key=key
    )
    assert status == 202, event

    [request] = receiver.wait_for("/plain", 1)
    assert json.loads(request.body)["data"] == {"invoice": "1"}
    rows = {
        row["endpoint_id"]: row
        for row in wait_for_status(api, key, event["id"], {"succeeded", "quarantined"}, 2)
    }
    assert rows[plain["id"]]["status"] == "succeeded"
    failed = rows[broken["id"]]
    assert failed["status"] == "quarantined"
    assert failed["quarantine_reason"] == "transform_error"
    assert "result is null" in failed["last_error"]

    # Past the first retry's delay (5 s ± 20 %), nothing more was tried or sent.
    time.sleep(7)
    status, again = api.call("GET", f"/v1/deliveries/{failed['id']}", key=key)
    assert (again["status"], again["attempts"], again["next_attempt_at"]) == (
        "quarantined",
        1,
        None,
    )
    [attempt] = attempts_of(api, key, failed["id"])
    assert (attempt["error_class"], attempt["status_code"], attempt["request_body"]) == (
        "transform_error",
        None,
        None,
    )
    assert [r.path for r in receiver.requests if r.path == "/broken"] == []
    status, health = api.call("GET", f"/v1/endpoints/{broken['id']}/health", key=key)
    assert (health["state"], health["consecutive_failures"]) == ("closed", 0)


def test_preview_equals_what_was_sent(stack: tuple[Api, Any], receiver: Receiver) -> None:
    api, _ = stack
    key = api.tenant()
    transform = {"jmespath": "{kind: type, lines: data.lines[?qty > `1`].sku, to: endpoint.id}"}
    endpoint = create_endpoint(api, key, receiver.url("/shaped"), transform=transform)
    data = {"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "é", "qty": 3}]}

    status, preview = api.call(
        "POST",
        "/v1/transforms/preview",
        {
            "transform": transform,
            "event": {"type": "order.placed", "data": data},
            "endpoint_id": endpoint["id"],
        },
        key=key,
    )
    assert status == 200, preview
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "order.placed", "payload": data}, key=key
    )
    assert status == 202, event

    [request] = receiver.wait_for("/shaped", 1)
    assert json.loads(request.body) == preview["body"]
    assert (
        request.body
        == json.dumps(preview["body"], ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert preview["body"] == {"kind": "order.placed", "lines": ["b", "é"], "to": endpoint["id"]}


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_the_embedded_mode_transforms_and_quarantines_too(tmp_path: Any) -> None:
    with hookline_up(tmp_path) as (api, env, cwd), Receiver() as receiver:
        key = cli(env, cwd, "tenants", "create", "acme")["api_key"]
        shaped = create_endpoint(
            api, key, receiver.url("/shaped"), transform={"jmespath": "[data.n, type]"}
        )
        broken = create_endpoint(api, key, receiver.url("/broken"), transform={"jmespath": "type"})
        status, event = api.call(
            "POST", "/v1/events", {"event_type": "ping", "payload": {"n": 1}}, key=key
        )
        assert status == 202, event

        [request] = receiver.wait_for("/shaped", 1)
        assert Webhook(shaped["secret"]).verify(request.body, request.headers) == [1, "ping"]
        rows = {
            row["endpoint_id"]: row
            for row in wait_for_status(api, key, event["id"], {"succeeded", "quarantined"}, 2)
        }
        assert rows[shaped["id"]]["status"] == "succeeded"
        assert rows[broken["id"]]["quarantine_reason"] == "transform_error"
        [attempt] = attempts_of(api, key, rows[shaped["id"]]["id"])
        assert attempt["request_body"] == request.body.decode() == '[1,"ping"]'
