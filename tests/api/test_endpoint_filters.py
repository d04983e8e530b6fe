"""An endpoint's payload `filter`: saved, shown, changed, refused, and applied at fan-out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.db.models import Delivery, Endpoint
from engine.deliveries import fanout
from engine.endpoints import payload_filter
from tests.api.support import Api, assert_problem
from tests.factories import endpoint_body

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]
BIG_ORDERS = {"data.amount": {"$gte": 100}, "data.currency": {"$in": ["usd", "eur"]}}


def test_a_filter_is_saved_and_shown(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint(filter=BIG_ORDERS)

    assert created["filter"] == BIG_ORDERS
    shown = tenant.get(ENDPOINT, endpoint_id=created["id"])
    assert shown.status_code == 200
    assert shown.json["filter"] == BIG_ORDERS
    [listed] = [e for e in tenant.get(ENDPOINTS).json["data"] if e["id"] == created["id"]]
    assert listed["filter"] == BIG_ORDERS


def test_an_endpoint_without_a_filter_shows_null(create_endpoint: CreateEndpoint) -> None:
    assert create_endpoint()["filter"] is None
    assert create_endpoint(filter=None)["filter"] is None


def test_patch_sets_replaces_and_clears_the_filter(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    set_ = tenant.patch(ENDPOINT, {"filter": BIG_ORDERS}, endpoint_id=endpoint_id)
    assert set_.status_code == 200, set_.text
    assert set_.json["filter"] == BIG_ORDERS
    replaced = tenant.patch(ENDPOINT, {"filter": {"type": "a.b"}}, endpoint_id=endpoint_id)
    assert replaced.json["filter"] == {"type": "a.b"}
    untouched = tenant.patch(ENDPOINT, {"description": "x"}, endpoint_id=endpoint_id)
    assert untouched.json["filter"] == {"type": "a.b"}
    cleared = tenant.patch(ENDPOINT, {"filter": None}, endpoint_id=endpoint_id)
    assert cleared.status_code == 200
    assert cleared.json["filter"] is None
    assert tenant.get(ENDPOINT, endpoint_id=endpoint_id).json["filter"] is None


def nested(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"data.x": 1}
    for _ in range(levels - 1):
        spec = {"$not": spec}
    return spec


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"data.amount": {"$regex": "^1"}}, "filter.data.amount.$regex"),
        ({"data.amount": {"$gte": True}}, "filter.data.amount.$gte"),
        ({"data.amount": {}}, "filter.data.amount"),
        ({"$or": [{"data.a": 1}, {"data.b": {"$in": "x"}}]}, "filter.$or.1.data.b.$in"),
        ({"$and": []}, "filter.$and"),
        ({"$not": 3}, "filter.$not"),
        ({"$nor": [{"data.a": 1}]}, "filter.$nor"),
        ({"customer.country": "FR"}, "filter.customer.country"),
        ({"data.x": {"$in": list(range(61))}}, "filter"),
        (nested(9), "filter." + ".".join(["$not"] * 8)),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_path_inside_it(
    tenant: Api, create_endpoint: CreateEndpoint, spec: dict[str, Any], field: str
) -> None:
    problem = assert_problem(tenant.post(ENDPOINTS, endpoint_body(filter=spec)), 422, field)
    assert problem["type"] == "urn:hookline:problem:validation"
    assert problem["errors"][0]["field"] == field

    endpoint_id = create_endpoint(filter={"type": "kept"})["id"]
    assert_problem(tenant.patch(ENDPOINT, {"filter": spec}, endpoint_id=endpoint_id), 422, field)
    assert tenant.get(ENDPOINT, endpoint_id=endpoint_id).json["filter"] == {"type": "kept"}


@pytest.mark.parametrize("spec", [[{"data.a": 1}], "data.a", 7, True])
def test_a_filter_that_is_not_an_object_is_a_422(tenant: Api, spec: Any) -> None:
    assert_problem(tenant.post(ENDPOINTS, endpoint_body(filter=spec)), 422, "filter")


def delivered_to(event_id: str) -> set[str]:
    return {d.endpoint_id for d in Delivery.select().where(Delivery.event_id == event_id)}


def test_fan_out_creates_deliveries_only_for_endpoints_whose_filter_matches(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    everything = create_endpoint()["id"]
    big = create_endpoint(filter=BIG_ORDERS)["id"]
    french = create_endpoint(filter={"data.customer.country": "FR"})["id"]
    not_test = create_endpoint(filter={"$not": {"data.test": True}})["id"]
    events = {
        "big_fr": publish(
            payload={"amount": 500, "currency": "eur", "customer": {"country": "FR"}}
        ),
        "small": publish(payload={"amount": 5, "currency": "usd", "test": True}),
        "big_gbp": publish(payload={"amount": 500, "currency": "gbp"}),
        "string_amount": publish(payload={"amount": "500", "currency": "usd"}),
    }

    plan = fanout.fan_out_and_claim([e["id"] for e in events.values()], claim=100)

    assert delivered_to(events["big_fr"]["id"]) == {everything, big, french, not_test}
    assert delivered_to(events["small"]["id"]) == {everything}
    assert delivered_to(events["big_gbp"]["id"]) == {everything, not_test}
    assert delivered_to(events["string_amount"]["id"]) == {everything, not_test}
    assert len(plan.claimed) == 4 + 1 + 2 + 2


def test_a_filter_on_the_type_applies_after_the_subscription(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(event_types=["order.*"], filter={"type": {"$suffix": ".paid"}})[
        "id"
    ]
    paid, refunded, other = publish("order.paid"), publish("order.refunded"), publish("x.paid")

    fanout.fan_out_and_claim([paid["id"], refunded["id"], other["id"]], claim=10)

    assert delivered_to(paid["id"]) == {endpoint_id}
    assert delivered_to(refunded["id"]) == set()
    assert delivered_to(other["id"]) == set()


def test_a_changed_filter_applies_to_the_next_fan_out(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(filter={"data.order_id": 1})["id"]
    memo = fanout.EndpointMemo()
    before = publish()["id"]  # order_id 42
    fanout.fan_out_and_claim(before, claim=10, memo=memo)
    tenant.patch(ENDPOINT, {"filter": {"data.order_id": 42}}, endpoint_id=endpoint_id)
    after = publish()["id"]
    fanout.fan_out_and_claim(after, claim=10, memo=memo)

    assert delivered_to(before) == set()
    assert delivered_to(after) == {endpoint_id}


def test_a_stored_filter_the_api_would_refuse_lets_nothing_through(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    Endpoint.update(payload_filter={"data.order_id": {"$regex": "4"}}).where(
        Endpoint.id == endpoint_id
    ).execute()
    event_id = publish()["id"]

    fanout.fan_out_and_claim(event_id, claim=10)

    assert delivered_to(event_id) == set()


def test_events_are_not_parsed_when_no_endpoint_of_their_type_has_a_filter(
    create_endpoint: CreateEndpoint, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_endpoint(event_types=["order.paid"])
    create_endpoint(event_types=["other.*"], filter={"data.order_id": 42})
    parsed: list[str] = []
    real = payload_filter.document

    def counting(event_type: str, payload: Any) -> dict[str, Any]:
        parsed.append(event_type)
        return real(event_type, payload)

    monkeypatch.setattr(payload_filter, "document", counting)
    fanout.fan_out_and_claim([publish()["id"] for _ in range(3)], claim=10)
    assert parsed == []
    fanout.fan_out_and_claim([publish("other.thing")["id"] for _ in range(2)], claim=10)
    assert parsed == ["other.thing"] * 2
