"""Test events on real processes: `POST /v1/endpoints/{id}/test` reaches that endpoint alone,
signed, through the worker, and fails and retries as any delivery does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint, wait_for_status
from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


def send_test(api: Api, key: str, endpoint_id: str, body: Any) -> dict[str, Any]:
    status, sent = api.call("POST", f"/v1/endpoints/{endpoint_id}/test", body, key=key)
    assert status == 202, sent
    return sent  # type: ignore[no-any-return]


def test_a_test_event_reaches_its_endpoint_alone_signed_and_marked_test(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    target = create_endpoint(api, key, receiver.url("/tested"))
    create_endpoint(api, key, receiver.url("/bystander"))  # subscribed to everything

    sent = send_test(api, key, target["id"], {"event_type": "order.paid", "data": {"n": 1}})

    [request] = receiver.wait_for("/tested", 1)
    verified = Webhook(target["secret"]).verify(request.body, request.headers)
    assert (verified["type"], verified["data"]) == ("order.paid", {"n": 1})
    [delivery] = wait_for_status(api, key, sent["event_id"], {"succeeded"}, 1)
    assert (delivery["id"], delivery["test"]) == (sent["delivery_id"], True)
    status, event = api.call("GET", f"/v1/events/{sent['event_id']}", key=key)
    assert status == 200 and event["test"] is True
    time.sleep(1.0)  # the scheduler runs every 0.2 s here: time for a stray fan-out to show
    assert receiver.received("/bystander") == []


def test_a_failing_test_event_is_retried_as_any_delivery(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    target = create_endpoint(api, key, receiver.url("/flaky"), retry_schedule=[1])
    receiver.script("/flaky", 500)

    sent = send_test(api, key, target["id"], None)

    requests = receiver.wait_for("/flaky", 2)
    assert [json.loads(r.body)["type"] for r in requests[:2]] == ["webhook.test"] * 2
    wait_for_status(api, key, sent["event_id"], {"succeeded"}, 1)
    status, attempts = api.call("GET", f"/v1/deliveries/{sent['delivery_id']}/attempts", key=key)
    assert status == 200, attempts
    assert sorted(a["status_code"] for a in attempts["data"]) == [200, 500]


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_hookline_up_sends_a_test_event_to_its_endpoint_alone(
    tmp_path: Path, receiver: Receiver
) -> None:
    with hookline_up(tmp_path) as (api, env, cwd):
        key = cli(env, cwd, "tenants", "create", "acme")["api_key"]
        target = create_endpoint(api, key, receiver.url("/tested"))
        create_endpoint(api, key, receiver.url("/bystander"))

        sent = send_test(api, key, target["id"], None)

        [request] = receiver.wait_for("/tested", 1)
        verified = Webhook(target["secret"]).verify(request.body, request.headers)
        assert (verified["type"], verified["data"]) == ("webhook.test", {})
        [delivery] = wait_for_status(api, key, sent["event_id"], {"succeeded"}, 1)
        assert delivery["test"] is True
        time.sleep(1.0)
        assert receiver.received("/bystander") == []
