"""`/v1/events`: publish once per idempotency key, committed before the broker is asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.deliveries import fanout
from tests.api.conftest import MakeApi
from tests.api.support import Api, BrokenBroker, Recorder, UnconfirmedBroker, assert_problem
from tests.factories import event_body

EVENTS = "/v1/events"
EVENT = "/v1/events/{event_id}"
Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


def test_publishing_is_202_and_asks_the_broker_to_fan_out(tenant: Api, recorder: Recorder) -> None:
    result = tenant.post(EVENTS, event_body("order.paid", payload={"order": 7}))

    assert result.status_code == 202
    assert result.json["id"].startswith("evt_")
    assert result.json["event_type"] == "order.paid"
    assert result.json["payload"] == {"order": 7}
    assert result.json["idempotency_key"] is None
    assert recorder.calls == [("fan_out", result.json["id"])]


def test_the_payload_comes_back_exactly_as_sent(tenant: Api, publish: Publish) -> None:
    payload = {"ünïcode": "✓ 日本", "nested": {"list": [1, 2.5, None, True]}, "big": 2**70}
    published = publish(payload=payload)

    fetched = tenant.get(EVENT, event_id=published["id"])

    assert fetched.json["payload"] == payload


@pytest.mark.parametrize("where", ["body", "header"])
def test_a_repeated_idempotency_key_answers_the_first_event_with_200(
    tenant: Api, recorder: Recorder, where: str
) -> None:
    def send(order: int) -> Any:
        if where == "body":
            return tenant.post(EVENTS, event_body(payload={"n": order}, idempotency_key="k-1"))
        return tenant.post(
            EVENTS, event_body(payload={"n": order}), headers={"Idempotency-Key": "k-1"}
        )

    first, again = send(1), send(2)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"]
    assert again.json["payload"] == {"n": 1}
    assert again.json["idempotency_key"] == "k-1"
    assert recorder.calls == [("fan_out", first.json["id"])]
    assert len(tenant.get(EVENTS).json["data"]) == 1


def test_the_header_and_body_keys_are_the_same_key(tenant: Api, recorder: Recorder) -> None:
    first = tenant.post(EVENTS, event_body(idempotency_key="k-2"))
    again = tenant.post(EVENTS, event_body(), headers={"Idempotency-Key": "k-2"})
    both = tenant.post(
        EVENTS, event_body(idempotency_key="k-2"), headers={"Idempotency-Key": "k-2"}
    )

    assert [first.status_code, again.status_code, both.status_code] == [202, 200, 200]
    assert first.json["id"] == again.json["id"] == both.json["id"]
    assert len(recorder.calls) == 1


def test_header_and_body_keys_that_differ_are_422(tenant: Api, recorder: Recorder) -> None:
    result = tenant.post(EVENTS, event_body(idempotency_key="a"), headers={"Idempotency-Key": "b"})

    assert_problem(result, 422, "idempotency_key")
    assert recorder.calls == []
    assert tenant.get(EVENTS).json["data"] == []


def test_an_oversized_idempotency_key_header_is_400(tenant: Api) -> None:
    result = tenant.post(EVENTS, event_body(), headers={"Idempotency-Key": "k" * 256})

    assert_problem(result, 400, "Idempotency-Key")


def test_idempotency_keys_are_per_tenant(tenant: Api, stranger: Api) -> None:
    mine = tenant.post(EVENTS, event_body(idempotency_key="shared"))
    theirs = stranger.post(EVENTS, event_body(idempotency_key="shared"))

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json["id"] != theirs.json["id"]


@pytest.mark.parametrize("broker", [BrokenBroker, UnconfirmedBroker], ids=["raises", "unconfirmed"])
def test_a_broker_that_fails_still_gets_a_202_and_the_event_is_stored(
    make_api: MakeApi, admin: Api, broker: type[Recorder], logs: list[dict[str, Any]]
) -> None:
    enqueue = broker()
    key = admin.post("/v1/tenants", {"name": "Acme"}).json["api_key"]
    api = make_api(enqueue=enqueue).as_key(key)

    result = api.post(EVENTS, event_body())

    assert result.status_code == 202
    assert enqueue.calls == [("fan_out", result.json["id"])]
    assert api.get(EVENT, event_id=result.json["id"]).json["id"] == result.json["id"]
    assert api.get(EVENTS).json["data"][0]["id"] == result.json["id"]
    warned = [e for e in logs if e["event"] in ("publish_failed", "publish_unconfirmed")]
    assert [e["idents"] for e in warned] == [[result.json["id"]]]


def test_an_event_shows_one_delivery_per_matching_endpoint(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    wanted = [create_endpoint(event_types=["order.*"])["id"], create_endpoint()["id"]]
    create_endpoint(event_types=["invoice.paid"])
    event = publish("order.paid")

    before = tenant.get(EVENT, event_id=event["id"]).json["deliveries"]
    fanout.fan_out(event["id"])
    after = tenant.get(EVENT, event_id=event["id"]).json["deliveries"]

    assert before == []
    assert sorted(d["endpoint_id"] for d in after) == sorted(wanted)
    assert all(d["id"].startswith("dlv_") for d in after)
    assert {d["status"] for d in after} == {"pending"}
    assert {d["attempts"] for d in after} == {0}


def test_the_list_filters_by_event_type_newest_first(tenant: Api, publish: Publish) -> None:
    paid = [publish("order.paid")["id"] for _ in range(3)]
    publish("invoice.paid")

    everything = tenant.get(EVENTS).json["data"]
    filtered = tenant.get(EVENTS, params={"event_type": "order.paid"}).json["data"]

    assert len(everything) == 4
    assert [row["id"] for row in filtered] == paid[::-1]


def test_the_list_pages_with_a_cursor(tenant: Api, publish: Publish) -> None:
    published = [publish()["id"] for _ in range(5)]

    pages = tenant.walk(EVENTS, limit=2)

    assert [row["id"] for page in pages for row in page] == published[::-1]


def test_another_tenants_event_is_404_and_never_listed(
    tenant: Api, stranger: Api, publish: Publish
) -> None:
    event = publish()

    assert_problem(stranger.get(EVENT, event_id=event["id"]), 404)
    assert stranger.get(EVENTS).json["data"] == []


def test_an_unknown_event_id_is_404(tenant: Api) -> None:
    assert_problem(tenant.get(EVENT, event_id="evt_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404)
