"""`fan_out_and_claim` for several events at once: what one `fan_out` message of ids does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import secretbox
from engine.db.models import Delivery, Endpoint, EventFanOut
from engine.deliveries import fanout
from engine.sealed_fields import open_headers
from engine.settings import Settings
from tests.api.conftest import new_tenant
from tests.api.support import Api
from tests.factories import endpoint_body, event_body

CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]


def deliveries_of(event_id: str) -> list[Delivery]:
    return list(Delivery.select().where(Delivery.event_id == event_id))


def test_every_event_of_the_list_is_fanned_out_in_one_call(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_ids = {create_endpoint()["id"] for _ in range(3)}
    event_ids = [publish()["id"] for _ in range(4)]

    plan = fanout.fan_out_and_claim(event_ids, claim=100)

    assert len(plan.claimed) == 12 and plan.pending == []
    for event_id in event_ids:
        made = deliveries_of(event_id)
        assert {d.endpoint_id for d in made} == endpoint_ids
        assert {(d.status, d.attempts) for d in made} == {("delivering", 1)}
        assert EventFanOut.get_or_none(EventFanOut.event_id == event_id) is None
    assert sorted(c.delivery.id for c in plan.claimed) == sorted(
        d.id for e in event_ids for d in deliveries_of(e)
    )
    for claimed in plan.claimed:
        assert claimed.delivery.event_id == claimed.event.id


def test_the_claim_budget_is_shared_and_goes_to_the_events_in_the_order_given(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    for _ in range(3):
        create_endpoint()
    first, second, third = (publish()["id"] for _ in range(3))

    plan = fanout.fan_out_and_claim([third, first, second], claim=4)

    assert [c.event.id for c in plan.claimed] == [third] * 3 + [first]
    assert len(plan.pending) == 5
    pending_events = sorted(Delivery.get_by_id(d).event_id for d in plan.pending)
    assert pending_events == sorted([first] * 2 + [second] * 3)
    assert {Delivery.get_by_id(d).status for d in plan.pending} == {"pending"}


def test_events_of_different_tenants_each_reach_only_their_own_endpoints(
    admin: Api, tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    ours = create_endpoint()["id"]
    other = new_tenant(admin, "Initech")
    theirs = other.post("/v1/endpoints", endpoint_body()).json["id"]
    their_event = other.post("/v1/events", event_body()).json["id"]
    our_event = publish()["id"]

    plan = fanout.fan_out_and_claim([our_event, their_event], claim=10)

    assert {(c.event.id, c.endpoint.id) for c in plan.claimed} == {
        (our_event, ours),
        (their_event, theirs),
    }


def test_a_repeat_in_the_list_creates_nothing_for_it_and_answers_its_pending_deliveries(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    for _ in range(2):
        create_endpoint()
    done, fresh = publish()["id"], publish()["id"]
    earlier = fanout.fan_out_and_claim(done, claim=1)
    assert len(earlier.pending) == 1

    plan = fanout.fan_out_and_claim([done, fresh, fresh], claim=10)

    assert [c.event.id for c in plan.claimed] == [fresh, fresh], "a duplicate id counts once"
    assert plan.pending == earlier.pending
    assert len(deliveries_of(done)) == 2 and len(deliveries_of(fresh)) == 2


def test_an_event_that_does_not_exist_is_skipped(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    create_endpoint()
    real = publish()["id"]

    plan = fanout.fan_out_and_claim(["evt_missing", real], claim=10)

    assert [c.event.id for c in plan.claimed] == [real]
    assert plan.pending == []


def test_an_empty_list_does_nothing(publish: Publish) -> None:
    assert fanout.fan_out_and_claim([], claim=10) == fanout.FanOut([], [])


def test_an_endpoint_is_the_model_peewee_builds_and_is_built_again_once_it_changes(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish, sqlite_settings: Settings
) -> None:
    box = secretbox.from_settings(sqlite_settings)
    endpoint_id = create_endpoint(
        headers={"x-team": "billing"},
        metadata={"owner": "ops", "tier": 2},
        retry_schedule=[1, 5, 30],
        description="tabs\tand ünïcødé",
    )["id"]

    memo = fanout.EndpointMemo()
    first = fanout.fan_out_and_claim(publish()["id"], claim=10, memo=memo).claimed[0].endpoint
    again = fanout.fan_out_and_claim(publish()["id"], claim=10, memo=memo).claimed[0].endpoint

    assert first.__data__ == Endpoint.get_by_id(endpoint_id).__data__
    assert open_headers(first.headers, box, endpoint_id) == {"x-team": "billing"}
    assert first.retry_schedule == [1, 5, 30]
    assert again is first  # the same row: the model is not built twice
    changed = tenant.patch(
        "/v1/endpoints/{endpoint_id}",
        {"url": "https://other.example.com/in", "headers": {"x-team": "payments"}},
        endpoint_id=endpoint_id,
    )
    assert changed.status_code == 200, changed.text
    after = fanout.fan_out_and_claim(publish()["id"], claim=10, memo=memo).claimed[0].endpoint
    assert after is not first
    assert after.url == "https://other.example.com/in"
    assert open_headers(after.headers, box, endpoint_id) == {"x-team": "payments"}
    assert after.__data__ == Endpoint.get_by_id(endpoint_id).__data__


def test_a_fan_out_without_a_memo_remembers_nothing_for_the_next(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    create_endpoint()

    first = fanout.fan_out_and_claim(publish()["id"], claim=10).claimed[0].endpoint
    again = fanout.fan_out_and_claim(publish()["id"], claim=10).claimed[0].endpoint

    assert again is not first and again.__data__ == first.__data__


def test_the_plan_is_handed_over_before_the_deliveries_are_written(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    create_endpoint()
    event_id = publish()["id"]
    seen: list[tuple[int, int]] = []

    def before_writing(plan: fanout.FanOut) -> None:
        seen.append((len(plan.claimed), len(deliveries_of(event_id))))

    plan = fanout.fan_out_and_claim(event_id, claim=10, before_writing=before_writing)

    assert seen == [(1, 0)]  # the claim was known, its row not yet written
    assert [d.id for d in deliveries_of(event_id)] == [plan.claimed[0].delivery.id]


def test_a_failure_in_the_hand_over_commits_nothing(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    create_endpoint()
    event_id = publish()["id"]

    def before_writing(plan: fanout.FanOut) -> None:
        raise RuntimeError("could not start the attempts")

    with pytest.raises(RuntimeError):
        fanout.fan_out_and_claim(event_id, claim=10, before_writing=before_writing)

    assert deliveries_of(event_id) == []
    assert EventFanOut.get_or_none(EventFanOut.event_id == event_id) is not None
    assert len(fanout.fan_out_and_claim(event_id, claim=10).claimed) == 1
