"""Flow control through the API and the engine on SQLite: fields, health, hold and release."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from actors.flow import GIVEN_BACK, FlowRecorder
from actors.middleware import DeliveryPolicy
from engine.db.models import Attempt, Delivery, EndpointFlow, utcnow
from engine.deliveries import adaptive, fanout, flow, schedule, slots
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.settings import Settings
from tests.api.support import Api, assert_problem, outcome

CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]
HEALTH = "/v1/endpoints/{endpoint_id}/health"
ENDPOINT = "/v1/endpoints/{endpoint_id}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit_per_s", 0),
        ("rate_limit_per_s", 10_001),
        ("rate_limit_per_s", 1.5),
        ("max_in_flight", 0),
        ("max_in_flight", 1001),
        ("ordering", "lifo"),
        ("ordering", None),
    ],
)
def test_flow_fields_out_of_range_are_refused_naming_the_field(
    tenant: Api, field: str, value: Any
) -> None:
    body = {"url": "https://example.com/hook", field: value}
    assert_problem(tenant.post("/v1/endpoints", body), 422, field)


def test_flow_fields_are_stored_shown_changed_and_cleared(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint(rate_limit_per_s=50, max_in_flight=4, ordering="fifo")
    assert (created["rate_limit_per_s"], created["max_in_flight"], created["ordering"]) == (
        50,
        4,
        "fifo",
    )
    changed = tenant.patch(
        ENDPOINT, {"rate_limit_per_s": None, "ordering": "unordered"}, endpoint_id=created["id"]
    ).json
    assert (changed["rate_limit_per_s"], changed["max_in_flight"], changed["ordering"]) == (
        None,
        4,
        "unordered",
    )
    health = tenant.get(HEALTH, endpoint_id=created["id"]).json["flow"]
    assert (health["max_in_flight"], health["ordering"], health["throttled"]) == (4, "unordered", 0)
    plain = create_endpoint()
    assert (plain["rate_limit_per_s"], plain["max_in_flight"], plain["ordering"]) == (
        None,
        None,
        "unordered",
    )


def statuses(ids: list[str]) -> list[str]:
    by_id = {d.id: d.status for d in Delivery.select().where(Delivery.id.in_(ids))}
    return [by_id[i] for i in ids]


def deliveries_of(endpoint_id: str) -> list[Delivery]:
    return list(
        Delivery.select()
        .where(Delivery.endpoint_id == endpoint_id)
        .order_by(Delivery.event_created_at, Delivery.event_id)
    )


def record(claims: list[deliveries.Claim], status: int = 200) -> None:
    """Record one answer for each claim, as a worker's recorder does."""
    policy = DeliveryPolicy.of([60, 300], 86400, rand=lambda: 0.5)
    deliveries.record_many([(c, outcome(status)) for c in claims], decide=policy.decide)


def test_a_limited_endpoints_deliveries_wait_throttled_and_go_as_room_frees(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(max_in_flight=2)["id"]
    for _ in range(5):
        assert fanout.fan_out(publish()["id"]) == [], "none is published unreleased"
    waiting = [d.id for d in deliveries_of(endpoint_id)]
    assert statuses(waiting) == ["throttled"] * 5
    assert tenant.get(HEALTH, endpoint_id=endpoint_id).json["flow"]["throttled"] == 5

    first = flow.release(lease_s=60)
    assert first == waiting[:2], "the oldest first, as many as there is room"
    assert flow.release(lease_s=60) == [], "released and unclaimed count"
    assert deliveries.claim_many(first, lease_s=30) == [], "unreleased, a claim holds them"
    assert statuses(first) == ["throttled"] * 2
    first = flow.release(lease_s=60)
    claims = deliveries.claim_many(first, lease_s=30, released=True)
    assert [c.delivery.id for c in claims] == waiting[:2]
    assert all(c.flow is not None for c in claims)
    assert flow.release(lease_s=60) == [], "two in flight: no room"

    record(claims[:1])
    assert flow.release(lease_s=60) == waiting[2:3]


def test_a_rate_limited_endpoint_releases_its_deliveries_each_with_a_slot(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(rate_limit_per_s=20)["id"]
    for _ in range(12):
        fanout.fan_out(publish()["id"])
    ordered = [d.id for d in deliveries_of(endpoint_id)]
    now, every = utcnow(), dt.timedelta(seconds=1 / 19)

    first = flow.release(lease_s=60, now=now)
    assert first == ordered[:5], "the slots within the lookahead: 0.25 s at 19/s, and the first"
    lead = now + dt.timedelta(seconds=slots.LEAD_S)
    given = [lead + n * every for n in range(5)]
    at = {d.id: d.next_attempt_at for d in Delivery.select().where(Delivery.id.in_(first))}
    assert [at[i] for i in first] == pytest.approx(given, abs=dt.timedelta(microseconds=2))
    assert flow.release(lease_s=60, now=now) == [], "no slot free within the lookahead"
    later = flow.release(lease_s=60, now=now + dt.timedelta(milliseconds=100))
    assert later == ordered[5:7], "on from the next free slot, up to the new horizon"
    row = EndpointFlow.get(EndpointFlow.endpoint_id == endpoint_id)
    assert row.waiting
    assert row.next_slot_at == pytest.approx(lead + 7 * every, abs=dt.timedelta(microseconds=5))

    claims = deliveries.claim_many(first, lease_s=30, released=True)
    assert [c.slot_at for c in claims] == [at[i] for i in first], "the worker waits for it"
    unslotted = deliveries.claim_many(later, lease_s=30)
    assert unslotted == [], "a message flow control did not release is held again"


def test_a_delivery_whose_slot_passed_unsent_waits_again_its_attempt_unspent(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(rate_limit_per_s=20)["id"]
    for _ in range(3):
        fanout.fan_out(publish()["id"])
    now = utcnow()
    released = flow.release(lease_s=60, now=now)
    claims = deliveries.claim_many(released, lease_s=30, released=True)
    assert {c.delivery.attempts for c in claims} == {1}
    EndpointFlow.update(waiting=False).where(EndpointFlow.endpoint_id == endpoint_id).execute()

    missed = [(c.delivery.id, c.endpoint.id, c.delivery.lease_until) for c in claims[:2]]
    stale = [(claims[2].delivery.id, endpoint_id, claims[2].delivery.lease_until - seconds(1))]
    assert flow.give_back(missed + stale) == 2, "a lease not ours any more stays"
    assert statuses(released) == ["throttled", "throttled", "delivering"]
    rows = {d.id: d for d in Delivery.select().where(Delivery.id.in_(released))}
    assert [rows[i].attempts for i in released] == [0, 0, 1]
    assert rows[released[0]].next_attempt_at is None
    assert EndpointFlow.get(EndpointFlow.endpoint_id == endpoint_id).waiting

    again = flow.release(lease_s=60, now=now + dt.timedelta(milliseconds=100))
    assert again == released[:2]
    slot = Delivery.get_by_id(released[0]).next_attempt_at
    assert slot > max(c.slot_at for c in claims if c.slot_at), "a new slot, after the ones given"


def seconds(count: float) -> dt.timedelta:
    return dt.timedelta(seconds=count)


def test_a_fifo_endpoint_gives_its_head_only_when_the_one_before_is_done(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(ordering="fifo")["id"]
    for _ in range(3):
        fanout.fan_out(publish()["id"])
    ordered = [d.id for d in deliveries_of(endpoint_id)]

    head = flow.release(lease_s=60)
    assert head == ordered[:1]
    assert flow.release(lease_s=60) == []
    [claimed] = deliveries.claim_many(head, lease_s=30, released=True)
    record([claimed], status=500)  # it fails: a retry is scheduled, and it stays the head
    assert statuses(ordered) == ["scheduled", "throttled", "throttled"]
    assert flow.release(lease_s=60) == [], "the failing head blocks the rest"

    Delivery.update(next_attempt_at=utcnow()).where(Delivery.id == ordered[0]).execute()
    assert schedule.take_due(batch=10, lease_s=60) == ordered[:1]
    again = deliveries.claim_many(ordered[:1], lease_s=30)
    assert again == [], "a retry come due waits for its flow like the rest"
    [head_again] = deliveries.claim_many(flow.release(lease_s=60), lease_s=30, released=True)
    assert head_again.delivery.id == ordered[0]
    record([head_again])
    assert flow.release(lease_s=60) == ordered[1:2]


def test_a_429_halves_and_a_retry_after_pauses_the_whole_endpoint(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    pending = [fanout.fan_out(publish()["id"])[0] for _ in range(4)]
    claims = deliveries.claim_many(pending, lease_s=30)
    assert len(claims) == 4, "no flow control yet: the fast path"
    now = utcnow()
    refused = outcome(429, retry_after_s=30.0)
    changes = adaptive.observe(
        [(claims[0], refused)],
        now=now,
        ceiling=100,
        fast_s=1.0,
        in_flight=lambda e: flow.in_flight(e, now),
    )

    assert [c.concurrency for c in changes] == [2], "halved from the 4 in flight"
    shown = tenant.get(HEALTH, endpoint_id=endpoint_id).json["flow"]
    assert shown["concurrency_limit"] == 2
    assert shown["concurrency_reason"] == "halved from 4 to 2: answered 429"
    assert shown["pause_reason"] == "Retry-After 30s on a 429" and shown["paused_until"]
    later = fanout.fan_out(publish()["id"])
    assert later == [], "a paused endpoint's new deliveries wait"
    assert flow.release(lease_s=60) == [], "nothing goes while it is paused"


def test_a_learnt_limit_is_raised_only_when_the_endpoint_used_it(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    pending = [fanout.fan_out(publish()["id"])[0] for _ in range(3)]
    claims = deliveries.claim_many(pending, lease_s=30)
    now = utcnow()
    EndpointFlow.insert(
        endpoint_id=endpoint_id, concurrency=2, fast_streak=3, updated_at=now
    ).execute()
    learnt = EndpointFlow(endpoint_id=endpoint_id, concurrency=2)
    learning = [dataclasses.replace(c, flow=learnt) for c in claims]

    def observe(pairs: list[Any], in_flight: int) -> list[adaptive.Change]:
        return adaptive.observe(
            pairs, now=now, ceiling=100, fast_s=1.0, in_flight=lambda e: in_flight
        )

    assert observe([(learning[0], outcome(200))], in_flight=1) == [], "1 of 2 used: no raise"
    assert EndpointFlow.get_by_id(endpoint_id).concurrency == 2
    [raised] = observe([(learning[1], outcome(200))], in_flight=2)
    assert (raised.concurrency, raised.reason) == (3, "raised from 2 to 3: 5 fast successes")


def test_waiting_deliveries_an_endpoint_was_not_marked_for_are_found_and_released(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(max_in_flight=5)["id"]
    fanout.fan_out(publish()["id"])
    # A release that ended the wait while a fan-out it could not see added to it.
    EndpointFlow.update(waiting=False).where(EndpointFlow.endpoint_id == endpoint_id).execute()
    assert flow.release(lease_s=60) == [], "nothing looks at an endpoint not marked"

    assert flow.mark_orphans() == [endpoint_id]
    assert flow.mark_orphans() == [], "marked once"
    assert len(flow.release(lease_s=60)) == 1


def test_only_an_endpoint_that_was_idle_is_released_by_the_fan_out_itself(
    create_endpoint: CreateEndpoint, publish: Publish, tenant: Api
) -> None:
    endpoint_id = create_endpoint(rate_limit_per_s=10)["id"]
    first = fanout.fan_out_and_claim(publish()["id"])
    second = fanout.fan_out_and_claim(publish()["id"])
    assert first.throttled == [endpoint_id]
    assert second.throttled == [], "its release is coming: no lock taken, no release asked"


class Published:
    """A publisher that confirms every message and remembers the ids."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def enqueue_many(self, kind: str, idents: list[str], **options: Any) -> int:
        self.ids.extend(idents)
        return len(idents)


def test_the_recorder_records_what_was_sent_and_gives_back_what_missed_its_slot(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(rate_limit_per_s=20)["id"]
    for _ in range(2):
        fanout.fan_out(publish()["id"])
    sent, late = deliveries.claim_many(flow.release(lease_s=60), lease_s=30, released=True)
    policy = DeliveryPolicy.of([60, 300], 86400, rand=lambda: 0.5)
    published = Published()
    recorder = FlowRecorder(Settings(), published, policy.decide)  # type: ignore[arg-type]
    missed = Outcome(utcnow(), 0.0, error_class=slots.MISSED, error_detail="0.2 s late")

    decisions = recorder([(sent, outcome(200)), (late, missed)])

    assert [d.action for d in decisions] == ["succeed", "retry"]
    assert decisions[1] is GIVEN_BACK
    assert statuses([sent.delivery.id]) == ["succeeded"]
    assert Delivery.get_by_id(late.delivery.id).attempts == 0, "no attempt was made"
    assert Attempt.select().where(Attempt.delivery_id == late.delivery.id).count() == 0
    assert published.ids == [late.delivery.id], "released again at once, with a new slot"
    assert Delivery.get_by_id(late.delivery.id).next_attempt_at > late.slot_at
    assert EndpointFlow.get_by_id(endpoint_id).next_slot_at > late.slot_at


def test_slots_are_on_the_databases_clock_and_claimed_on_the_hosts(
    create_endpoint: CreateEndpoint, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose clock runs 2 s ahead of the database's waits for the same instant."""
    create_endpoint(rate_limit_per_s=20)
    fanout.fan_out(publish()["id"])
    behind = seconds(2)
    monkeypatch.setattr(flow, "database_now", lambda: utcnow() - behind)
    monkeypatch.setattr(flow, "host_ahead", lambda: behind)

    [released] = flow.release(lease_s=60)
    slot = Delivery.get_by_id(released).next_attempt_at
    [claimed] = deliveries.claim_many([released], lease_s=30, released=True)

    assert slot <= utcnow() - behind + seconds(slots.LEAD_S + 0.05), "given on its clock"
    assert claimed.slot_at - slot == pytest.approx(behind, abs=seconds(0.05))


def test_a_fifo_endpoint_with_a_rate_gives_its_head_when_its_slot_comes(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint(ordering="fifo", rate_limit_per_s=1)["id"]
    for _ in range(2):
        fanout.fan_out(publish()["id"])
    ordered = [d.id for d in deliveries_of(endpoint_id)]
    now = utcnow()

    head = flow.release(lease_s=60, now=now)
    assert head == ordered[:1]
    [claimed] = deliveries.claim_many(head, lease_s=30, released=True)
    assert claimed.slot_at == pytest.approx(now + seconds(slots.LEAD_S), abs=seconds(0.01))
    record([claimed])
    assert flow.release(lease_s=60, now=now) == [], "its turn has come, its next slot not yet"
    assert flow.release(lease_s=60, now=now + seconds(1)) == ordered[1:2], "1/s, at 95 %"
