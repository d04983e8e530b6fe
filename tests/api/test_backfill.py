"""Backfill: exactly the past events an endpoint's subscription matches and it never got."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.db.models import Delivery, utcnow
from engine.deliveries import fanout
from engine.replays import pacing
from tests.api.support import Api, assert_problem

BACKFILL = "/v1/endpoints/{endpoint_id}/backfill"
CANCEL = "/v1/replays/{replay_id}/cancel"
SINCE = "2000-01-01T00:00:00Z"
BIG = {"data.amount": {"$gte": 100}}

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


@pytest.fixture
def past(publish: Publish, create_endpoint: CreateEndpoint) -> dict[str, str]:
    """Events fanned out before the endpoint under test existed, by name."""
    create_endpoint(event_types=["user.*"])  # another endpoint, receiving some of them
    events = {
        "big": publish("order.paid", payload={"amount": 500}),
        "small": publish("order.paid", payload={"amount": 5}),
        "other_type": publish("user.created", payload={"amount": 900}),
        "big_too": publish("order.paid", payload={"amount": 100}),
    }
    for event in events.values():
        fanout.fan_out(event["id"])
    return {name: event["id"] for name, event in events.items()}


def received(endpoint_id: str) -> set[str]:
    return {d.event_id for d in Delivery.select().where(Delivery.endpoint_id == endpoint_id)}


def test_a_backfill_sends_exactly_the_matching_events_it_never_received(
    tenant: Api, past: dict[str, str], publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint(event_types=["order.*"], filter=BIG)["id"]
    unfanned = publish("order.paid", payload={"amount": 700})["id"]  # its fan-out will do it

    dry = tenant.post(BACKFILL, {"since": SINCE, "dry_run": True}, endpoint_id=endpoint_id)
    run = tenant.post(BACKFILL, {"since": SINCE, "rate_per_s": 100}, endpoint_id=endpoint_id)
    again = tenant.post(BACKFILL, {"since": SINCE}, endpoint_id=endpoint_id)

    assert dry.json == {
        "matched": 2,
        "by_endpoint": {endpoint_id: 2},
        "by_event_type": {"order.paid": 2},
    }
    assert run.status_code == 202
    assert (run.json["kind"], run.json["matched"], run.json["status"]) == ("backfill", 2, "running")
    assert received(endpoint_id) == {past["big"], past["big_too"]}
    assert unfanned not in received(endpoint_id)
    queued = pacing.pace(lease_s=30, batch=500, now=utcnow()).ids
    expected = [Delivery.get(Delivery.event_id == past[n]).id for n in ("big", "big_too")]
    assert queued == expected, "in event order"
    assert (again.json["matched"], again.json["status"]) == (0, "finished")


def test_a_cancelled_backfill_can_be_run_again(
    tenant: Api, past: dict[str, str], create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint(event_types=["order.paid"])["id"]
    first = tenant.post(BACKFILL, {"since": SINCE}, endpoint_id=endpoint_id).json

    cancelled = tenant.post(CANCEL, replay_id=first["id"]).json
    statuses = {d.status for d in Delivery.select().where(Delivery.endpoint_id == endpoint_id)}
    second = tenant.post(BACKFILL, {"since": SINCE}, endpoint_id=endpoint_id).json

    assert (cancelled["cancelled"], statuses) == (3, {"cancelled"})
    assert second["matched"] == 3, "cancelled before any attempt: never received"


def test_a_backfill_window_leaves_out_what_is_outside_it(
    tenant: Api, past: dict[str, str], create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    later = tenant.post(BACKFILL, {"since": "2999-01-01T00:00:00Z"}, endpoint_id=endpoint_id)

    assert (later.json["matched"], later.json["status"]) == (0, "finished")


@pytest.mark.parametrize(
    ("doc", "status", "field"),
    [
        ({}, 422, "since"),
        ({"since": "now"}, 400, "since"),
        ({"since": SINCE, "until": SINCE}, 422, "until"),
        ({"since": SINCE, "until": "1999-01-01T00:00:00Z", "dry_run": True}, 422, "until"),
        ({"since": SINCE, "rate_per_s": -1}, 422, "rate_per_s"),
        ({"since": SINCE, "statuses": ["cancelled"]}, 422, "statuses"),
    ],
)
def test_a_bad_backfill_is_a_problem_naming_the_field(
    tenant: Api, create_endpoint: CreateEndpoint, doc: dict[str, Any], status: int, field: str
) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(tenant.post(BACKFILL, doc, endpoint_id=endpoint_id), status, field)


def test_another_tenants_endpoint_cannot_be_backfilled(
    stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(stranger.post(BACKFILL, {"since": SINCE}, endpoint_id=endpoint_id), 404)
