"""Pause and resume: deliveries wait `paused`, unattempted and not aged, then go in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from actors.middleware import DeliveryPolicy
from engine.db.models import Delivery, Endpoint, EndpointHealth, utcnow
from engine.deliveries import fanout, fifo, schedule
from engine.deliveries import record as deliveries
from engine.replays import pacing, pause
from tests.api.support import Api, assert_problem, outcome

PAUSE = "/v1/endpoints/{endpoint_id}/pause"
RESUME = "/v1/endpoints/{endpoint_id}/resume"
ENDPOINT = "/v1/endpoints/{endpoint_id}"

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


def fanned(publish: Publish, n: int) -> list[str]:
    """`n` events fanned out, in order; their deliveries' ids."""
    events = [publish()["id"] for _ in range(n)]
    for event_id in events:
        fanout.fan_out(event_id)
    return [Delivery.get(Delivery.event_id == event_id).id for event_id in events]


def status(delivery_id: str) -> str:
    return str(Delivery.get_by_id(delivery_id).status)


def test_a_paused_endpoint_shows_when_and_its_new_deliveries_wait_paused(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    paused = tenant.post(PAUSE, endpoint_id=endpoint_id)
    again = tenant.post(PAUSE, endpoint_id=endpoint_id)
    [delivery_id] = fanned(publish, 1)

    assert paused.status_code == 200
    assert paused.json["paused"] is True and paused.json["status"] == "active"
    assert again.json["paused_at"] == paused.json["paused_at"], "pausing again changes nothing"
    assert tenant.get(ENDPOINT, endpoint_id=endpoint_id).json["paused"] is True
    assert status(delivery_id) == "paused"
    assert deliveries.claim(delivery_id, lease_s=30) is None, "never attempted"
    assert not EndpointHealth.select().exists(), "no outcome reached its breaker"


def test_a_retry_that_comes_due_while_paused_waits_paused(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]
    [delivery_id] = fanned(publish, 1)
    claimed = deliveries.claim(delivery_id, lease_s=30)
    assert claimed is not None
    deliveries.record(claimed, outcome(503), decide=DeliveryPolicy.of([1], 86400).decide)
    tenant.post(PAUSE, endpoint_id=endpoint_id)
    Delivery.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).execute()

    [due] = schedule.take_due(batch=10, lease_s=30)
    taken = deliveries.claim_many([due], lease_s=30)

    assert (taken, status(delivery_id)) == ([], "paused")


def test_resume_sends_them_in_event_order_paced_and_not_aged_by_the_wait(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]
    tenant.post(PAUSE, endpoint_id=endpoint_id)
    ids = fanned(publish, 4)
    long_ago = utcnow() - dt.timedelta(days=30)
    Delivery.update(event_created_at=long_ago).where(Delivery.id == ids[0]).execute()

    resumed = tenant.post(RESUME, endpoint_id=endpoint_id)
    now = utcnow()
    first = pacing.pace(lease_s=30, batch=500, now=now).ids
    rest = pacing.pace(lease_s=30, batch=500, now=now + dt.timedelta(seconds=1)).ids

    assert resumed.status_code == 200
    assert resumed.json["resumed"] == 4
    assert (resumed.json["endpoint"]["paused"], resumed.json["endpoint"]["paused_at"]) == (
        False,
        None,
    )
    assert first == ids, "in event order (the oldest event first)"
    slots_at = [Delivery.get_by_id(i).next_attempt_at for i in ids]
    assert slots_at == sorted(slots_at), "their slots too"
    assert rest == [], "nothing twice"
    claimed = deliveries.claim(ids[0], lease_s=30)
    assert claimed is not None
    policy = DeliveryPolicy.of([60], 7 * 86400)
    decision = deliveries.record(claimed, outcome(503), decide=policy.decide)
    assert decision.action == "retry", "a month in pause does not age it out"


def test_a_fifo_endpoints_paused_head_keeps_its_place(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint(ordering="fifo")["id"]
    tenant.post(PAUSE, endpoint_id=endpoint_id)
    ids = fanned(publish, 4)
    tenant.post(RESUME, endpoint_id=endpoint_id)
    now = utcnow()

    paced = pacing.pace(lease_s=30, batch=500, now=now)
    queued = paced.ids
    assert paced.to_flow == ids, "in event order, to its flow control"
    assert deliveries.claim_many(queued[::-1], lease_s=30) == [], "FIFO: held for its turn"

    assert fifo.head_of(endpoint_id).id == ids[0]


def test_paused_deliveries_of_an_endpoint_resumed_meanwhile_are_released(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]
    tenant.post(PAUSE, endpoint_id=endpoint_id)
    [late] = fanned(publish, 1)
    Endpoint.update(paused_at=None).where(Endpoint.id == endpoint_id).execute()

    assert pause.adopt_orphans(50) == [endpoint_id]
    assert (status(late), Delivery.get_by_id(late).next_attempt_at) == ("scheduled", None)
    assert pacing.pace(lease_s=30, batch=500).at_slot == [late]


def test_deleting_a_paused_endpoint_cancels_its_paused_deliveries(
    tenant: Api, publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]
    tenant.post(PAUSE, endpoint_id=endpoint_id)
    [delivery_id] = fanned(publish, 1)

    tenant.delete(ENDPOINT, endpoint_id=endpoint_id)

    assert status(delivery_id) == "cancelled"


def test_another_tenant_can_neither_pause_nor_resume(
    stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(stranger.post(PAUSE, endpoint_id=endpoint_id), 404)
    assert_problem(stranger.post(RESUME, endpoint_id=endpoint_id), 404)
