"""`/v1/deliveries`: where each event went, and every attempt, after the engine fans out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.deliveries import fanout
from tests.api.support import Api, assert_problem, attempt, outcome

DELIVERIES = "/v1/deliveries"
DELIVERY = "/v1/deliveries/{delivery_id}"
ATTEMPTS = "/v1/deliveries/{delivery_id}/attempts"
Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


@pytest.fixture
def fanned_out(
    publish: Publish, create_endpoint: CreateEndpoint
) -> Callable[..., tuple[str, list[str]]]:
    """Publish an event and fan it out; answer its id and its delivery ids."""

    def make(event_type: str = "order.paid") -> tuple[str, list[str]]:
        event_id = publish(event_type)["id"]
        return event_id, sorted(fanout.fan_out(event_id))

    return make


def delivered_to(tenant: Api, event_id: str) -> set[str]:
    rows = tenant.get(DELIVERIES, params={"event_id": event_id}).json["data"]
    return {row["endpoint_id"] for row in rows}


def test_fan_out_matches_each_endpoints_event_types(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    orders = create_endpoint(event_types=["order.*"])["id"]
    everything = create_endpoint(event_types=[])["id"]
    star = create_endpoint(event_types=["*"])["id"]
    exact = create_endpoint(event_types=["invoice.paid"])["id"]

    order_event, _ = fanned_out("order.paid")
    invoice_event, _ = fanned_out("invoice.paid")
    bare_event, _ = fanned_out("order")

    assert delivered_to(tenant, order_event) == {orders, everything, star}
    assert delivered_to(tenant, invoice_event) == {everything, star, exact}
    assert delivered_to(tenant, bare_event) == {everything, star}


def test_a_deleted_endpoint_gets_nothing(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    kept = create_endpoint()["id"]
    gone = create_endpoint()["id"]
    tenant.delete("/v1/endpoints/{endpoint_id}", endpoint_id=gone)

    event_id, _ = fanned_out()

    assert delivered_to(tenant, event_id) == {kept}


def test_another_tenants_endpoints_get_nothing(
    tenant: Api, stranger: Api, fanned_out: Callable[..., Any]
) -> None:
    stranger.post("/v1/endpoints", {"url": "https://theirs.example.com/"})

    _, ids = fanned_out()

    assert ids == []
    assert stranger.get(DELIVERIES).json["data"] == []


def test_the_list_filters_by_event_endpoint_and_status(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    first = create_endpoint()["id"]
    second = create_endpoint()["id"]
    event_a, ids_a = fanned_out()
    event_b, _ = fanned_out()
    owners = {d: tenant.get(DELIVERY, delivery_id=d).json["endpoint_id"] for d in ids_a}
    done = next(d for d, owner in owners.items() if owner == first)
    attempt(done, outcome(200))

    def listed(**params: str) -> list[dict[str, Any]]:
        result = tenant.get(DELIVERIES, params=params)
        assert result.status_code == 200
        return result.json["data"]  # type: ignore[no-any-return]

    assert len(listed()) == 4
    assert {d["event_id"] for d in listed(event_id=event_a)} == {event_a}
    assert {d["endpoint_id"] for d in listed(endpoint_id=second)} == {second}
    assert [d["id"] for d in listed(status="succeeded")] == [done]
    assert len(listed(status="pending")) == 3
    assert listed(event_id=event_b, status="succeeded") == []
    assert listed(status="quarantined") == []


def test_a_delivery_is_fetched_with_its_whole_state(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    endpoint_id = create_endpoint()["id"]
    event_id, [delivery_id] = fanned_out("order.paid")

    result = tenant.get(DELIVERY, delivery_id=delivery_id)

    assert result.status_code == 200
    assert result.json["id"] == delivery_id
    assert result.json["event_id"] == event_id
    assert result.json["endpoint_id"] == endpoint_id
    assert result.json["event_type"] == "order.paid"
    assert result.json["status"] == "pending"
    assert result.json["attempts"] == 0
    assert result.json["last_attempt_at"] is None


def test_a_successful_attempt_is_listed_and_ends_the_delivery(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    create_endpoint()
    _, [delivery_id] = fanned_out()

    attempt(delivery_id, outcome(200, response_body="ok"))
    attempts = tenant.get(ATTEMPTS, delivery_id=delivery_id).json
    delivery = tenant.get(DELIVERY, delivery_id=delivery_id).json

    [listed] = attempts["data"]
    assert listed["id"].startswith("att_")
    assert listed["delivery_id"] == delivery_id
    assert listed["number"] == 1
    assert listed["status_code"] == 200
    assert listed["duration_ms"] == 12.5
    assert listed["outcome"] == "success"
    assert listed["response_body"] == "ok"
    assert attempts["next_cursor"] is None
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "succeeded",
        1,
        200,
    )


def test_a_failed_attempt_schedules_a_retry(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    create_endpoint()
    _, [delivery_id] = fanned_out()

    attempt(delivery_id, outcome(503, error_class="http_status", error_detail="HTTP 503"))
    attempt_ = tenant.get(ATTEMPTS, delivery_id=delivery_id).json["data"][0]
    delivery = tenant.get(DELIVERY, delivery_id=delivery_id).json

    assert (attempt_["outcome"], attempt_["error_class"]) == ("failure", "http_status")
    assert delivery["status"] == "scheduled"
    assert delivery["next_attempt_at"] is not None
    assert delivery["last_error"] == "HTTP 503"
    event = tenant.get("/v1/events/{event_id}", event_id=delivery["event_id"]).json
    assert event["deliveries"][0]["status"] == "scheduled"


def test_a_transport_failure_is_listed_without_a_status_code(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    create_endpoint()
    _, [delivery_id] = fanned_out()

    attempt(delivery_id, outcome(None, error_class="timeout", error_detail="timed out"))

    [listed] = tenant.get(ATTEMPTS, delivery_id=delivery_id).json["data"]
    assert (listed["status_code"], listed["error_class"]) == (None, "timeout")


def test_a_410_quarantines_the_delivery_and_disables_the_endpoint(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    endpoint_id = create_endpoint()["id"]
    _, [delivery_id] = fanned_out()

    attempt(delivery_id, outcome(410, error_class="http_status"))

    assert tenant.get(DELIVERY, delivery_id=delivery_id).json["status"] == "quarantined"
    endpoint = tenant.get("/v1/endpoints/{endpoint_id}", endpoint_id=endpoint_id).json
    assert endpoint["status"] == "disabled"
    assert "410" in endpoint["disabled_reason"]


def test_deleting_an_endpoint_cancels_its_open_deliveries_but_keeps_the_log(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    endpoint_id = create_endpoint()["id"]
    _, [delivery_id] = fanned_out()

    tenant.delete("/v1/endpoints/{endpoint_id}", endpoint_id=endpoint_id)

    delivery = tenant.get(DELIVERY, delivery_id=delivery_id).json
    assert delivery["status"] == "cancelled"
    assert tenant.get(DELIVERIES, params={"endpoint_id": endpoint_id}).json["data"]


def test_the_list_pages_newest_first(
    tenant: Api, create_endpoint: CreateEndpoint, fanned_out: Callable[..., Any]
) -> None:
    create_endpoint()
    made = [fanned_out()[1][0] for _ in range(5)]

    pages = tenant.walk(DELIVERIES, limit=2)

    assert [row["id"] for page in pages for row in page] == made[::-1]


@pytest.mark.parametrize("template", [DELIVERY, ATTEMPTS], ids=["item", "attempts"])
def test_another_tenants_delivery_is_404(
    tenant: Api,
    stranger: Api,
    create_endpoint: CreateEndpoint,
    fanned_out: Callable[..., Any],
    template: str,
) -> None:
    create_endpoint()
    event_id, [delivery_id] = fanned_out()

    assert_problem(stranger.get(template, delivery_id=delivery_id), 404)
    assert stranger.get(DELIVERIES, params={"event_id": event_id}).json["data"] == []


def test_an_unknown_delivery_is_404_for_its_attempts_too(tenant: Api) -> None:
    for template in (DELIVERY, ATTEMPTS):
        assert_problem(tenant.get(template, delivery_id="dlv_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404)
