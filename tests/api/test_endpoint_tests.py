"""`POST /v1/endpoints/{endpoint_id}/test`: one test event, to one endpoint, never fanned out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.db.models import EventFanOut
from engine.deliveries import fanout
from tests.api.support import Api, Recorder, assert_problem, attempt, outcome

TEST = "/v1/endpoints/{endpoint_id}/test"
EVENT = "/v1/events/{event_id}"
DELIVERY = "/v1/deliveries/{delivery_id}"
DELIVERIES = "/v1/deliveries"
CreateEndpoint = Callable[..., dict[str, Any]]


def send_test(tenant: Api, endpoint_id: str, body: Any = None) -> dict[str, Any]:
    if body is None:  # no body at all
        result = tenant.post(TEST, endpoint_id=endpoint_id)
    else:
        result = tenant.post(TEST, body, endpoint_id=endpoint_id)
    assert result.status_code == 202, result.text
    return result.json  # type: ignore[no-any-return]


def test_a_test_goes_to_the_one_endpoint_as_a_webhook_test_marked_test(
    tenant: Api, create_endpoint: CreateEndpoint, recorder: Recorder
) -> None:
    target = create_endpoint()["id"]
    create_endpoint()  # another endpoint of the tenant, subscribed to everything

    sent = send_test(tenant, target)

    event = tenant.get(EVENT, event_id=sent["event_id"]).json
    assert (event["event_type"], event["payload"], event["test"]) == ("webhook.test", {}, True)
    delivery = tenant.get(DELIVERY, delivery_id=sent["delivery_id"]).json
    assert (delivery["endpoint_id"], delivery["status"], delivery["test"]) == (
        target,
        "pending",
        True,
    )
    assert ("deliver", sent["delivery_id"]) in recorder.calls
    assert not [call for call in recorder.calls if call[0] == "fan_out"]
    # Never fanned out: no pending fan-out row, and a fan-out of it (a stray message) creates
    # nothing; it answers the test's own delivery, still pending, as it does for a repeat.
    assert EventFanOut.get_or_none(EventFanOut.event_id == sent["event_id"]) is None
    assert fanout.fan_out(sent["event_id"]) == [sent["delivery_id"]]
    listed = tenant.get(DELIVERIES, params={"event_id": sent["event_id"]}).json["data"]
    assert [row["id"] for row in listed] == [sent["delivery_id"]]


def test_a_test_carries_the_event_type_and_data_it_is_given(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    target = create_endpoint(event_types=["invoice.*"])["id"]

    sent = send_test(tenant, target, {"event_type": "invoice.paid", "data": {"amount": 42}})

    event = tenant.get(EVENT, event_id=sent["event_id"]).json
    assert (event["event_type"], event["payload"]) == ("invoice.paid", {"amount": 42})


def test_real_events_are_not_marked_test(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Callable[..., dict[str, Any]]
) -> None:
    create_endpoint()
    event = publish()

    assert tenant.get(EVENT, event_id=event["id"]).json["test"] is False
    [delivery_id] = fanout.fan_out(event["id"])
    assert tenant.get(DELIVERY, delivery_id=delivery_id).json["test"] is False


def test_a_test_attempt_is_recorded_in_the_attempt_log(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    sent = send_test(tenant, create_endpoint()["id"])

    attempt(sent["delivery_id"], outcome(200))

    assert tenant.get(DELIVERY, delivery_id=sent["delivery_id"]).json["status"] == "succeeded"
    attempts = tenant.get(f"{DELIVERY}/attempts", delivery_id=sent["delivery_id"]).json["data"]
    assert [row["status_code"] for row in attempts] == [200]


def test_another_tenants_endpoint_is_not_found(
    stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    theirs = create_endpoint()["id"]

    problem = assert_problem(stranger.post(TEST, {}, endpoint_id=theirs), 404)
    assert problem["type"].endswith(":not-found")


def test_an_unverified_endpoint_is_a_conflict(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    unverified = create_endpoint(verify=True)["id"]

    result = tenant.post(TEST, {}, endpoint_id=unverified)

    problem = assert_problem(result, 409)
    assert problem["type"].endswith(":conflict") and "unverified" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_type": "not a type!"}, "event_type"),
        ({"data": [1, 2]}, "data"),
        ({"data": "text"}, "data"),
        ({"payload": {}}, "payload"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(
    tenant: Api, create_endpoint: CreateEndpoint, body: dict[str, Any], field: str
) -> None:
    result = tenant.post(TEST, body, endpoint_id=create_endpoint()["id"])

    problem = assert_problem(result, 422)
    assert problem["type"].endswith(":validation") and field in result.text


def test_a_key_without_endpoints_write_cannot_send_a_test(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    target = create_endpoint()["id"]
    created = tenant.post("/v1/keys", {"name": "reader", "scopes": ["endpoints:read"]})
    assert created.status_code == 201, created.text

    result = tenant.as_key(created.json["api_key"]).post(TEST, {}, endpoint_id=target)

    assert assert_problem(result, 403)["type"].endswith(":forbidden")


def test_the_endpoints_filter_applies_to_a_test(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    target = create_endpoint(filter={"data.amount": {"$gte": 100}})["id"]

    refused = tenant.post(TEST, {"data": {"amount": 5}}, endpoint_id=target)
    sent = send_test(tenant, target, {"data": {"amount": 500}})

    problem = assert_problem(refused, 422, "data")
    assert "filter" in problem["detail"]
    assert tenant.get(EVENT, event_id=sent["event_id"]).json["payload"] == {"amount": 500}


def test_without_data_a_test_carries_the_catalogs_first_example_of_its_type(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    target = create_endpoint()["id"]
    created = tenant.post(
        "/v1/event-types",
        {"name": "invoice.paid", "examples": [{"invoice": "in_1"}, {"invoice": "in_2"}]},
    )
    assert created.status_code == 201, created.text

    with_example = send_test(tenant, target, {"event_type": "invoice.paid"})
    without = send_test(tenant, target, {"event_type": "invoice.voided"})

    assert tenant.get(EVENT, event_id=with_example["event_id"]).json["payload"] == {
        "invoice": "in_1"
    }
    assert tenant.get(EVENT, event_id=without["event_id"]).json["payload"] == {}
