"""Batched delivery in the engine: `claim_many`, `record_many`, `fan_out_and_claim` (on SQLite)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from actors.middleware import DeliveryPolicy
from engine.breakers import store as health
from engine.breakers.state import Policy
from engine.db.models import (
    Attempt,
    Delivery,
    Endpoint,
    EndpointHealth,
    utcnow,
)
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.retry import Decision
from tests.api.support import Api, attempt, outcome

CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]
SCHEDULE = [60, 300]


def at(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def close_to(value: dt.datetime | None, expected: dt.datetime, slack_s: float = 5.0) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= slack_s


def row(delivery_id: str) -> Delivery:
    return Delivery.get_by_id(delivery_id)


def set_breaker(endpoint_id: str, state: str) -> None:
    """Put the endpoint's breaker in `state`, as the supervisor would have left it."""
    EndpointHealth.insert(endpoint_id=endpoint_id, state=state, updated_at=utcnow()).on_conflict(
        conflict_target=[EndpointHealth.endpoint_id],
        update={EndpointHealth.state: state, EndpointHealth.probe_delivery_id: None},
    ).execute()


def open_breaker(endpoint_id: str) -> None:
    """The supervisor folding enough failures to open the endpoint's breaker."""
    seen = [health.Observation(endpoint_id, False, utcnow(), 500, f"dlv_{n}") for n in range(12)]
    health.fold(seen, policy=Policy())
    assert EndpointHealth.get_by_id(endpoint_id).state == "open"


def record(
    pairs: list[tuple[deliveries.Claim, Outcome]],
    *,
    schedule: list[int] = SCHEDULE,
    max_age_s: float = 86400,
) -> list[Decision]:
    policy = DeliveryPolicy.of(schedule, max_age_s, rand=lambda: 0.5)
    return deliveries.record_many(pairs, decide=policy.decide)


@pytest.fixture
def deliveries_to(publish: Publish) -> Callable[[int], list[str]]:
    """Publish `count` events to the tenant's endpoints; answer the deliveries, in order."""

    def make(count: int) -> list[str]:
        made: list[str] = []
        for _ in range(count):
            made += sorted(fanout.fan_out(publish()["id"]))
        return made

    return make


@pytest.fixture
def one_each(
    publish: Publish, create_endpoint: CreateEndpoint
) -> Callable[[int], tuple[list[str], dict[str, str]]]:
    """`count` endpoints and one event fanned out to them; answer endpoint ids and deliveries."""

    def make(count: int) -> tuple[list[str], dict[str, str]]:
        endpoint_ids = [create_endpoint()["id"] for _ in range(count)]
        ids = fanout.fan_out(publish()["id"])
        by_endpoint = {row(d).endpoint_id: d for d in ids}
        assert set(by_endpoint) == set(endpoint_ids)
        return endpoint_ids, by_endpoint

    return make


# --- claim_many -------------------------------------------------------------------------


def test_claim_many_claims_each_in_the_order_asked(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    endpoint = create_endpoint()
    ids = deliveries_to(4)
    asked = [ids[2], ids[0], ids[3], ids[1]]

    claims = deliveries.claim_many(asked, lease_s=45)

    assert [c.delivery.id for c in claims] == asked
    for claimed in claims:
        assert (claimed.delivery.status, claimed.delivery.attempts) == ("delivering", 1)
        assert close_to(claimed.delivery.lease_until, at(45))
        assert claimed.endpoint.id == endpoint["id"]
        assert claimed.endpoint.url == endpoint["url"]
        assert claimed.event.id == claimed.delivery.event_id
        assert claimed.event.event_type == "order.paid"
        stored = row(claimed.delivery.id)
        assert (stored.status, stored.attempts) == ("delivering", 1)
        assert close_to(stored.lease_until, at(45))


def test_claim_many_skips_what_is_not_claimable(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    leased, done, free, other = deliveries_to(4)
    assert deliveries.claim(leased, lease_s=300) is not None
    attempt(done, outcome(200))

    claims = deliveries.claim_many([leased, "dlv_unknown", done, free, free, other], lease_s=30)

    assert [c.delivery.id for c in claims] == [free, other]
    assert (row(free).attempts, row(other).attempts) == (1, 1), "a duplicate id claims once"
    assert (row(leased).status, row(leased).attempts) == ("delivering", 1)
    assert (row(done).status, row(done).attempts) == ("succeeded", 1)


def test_claim_many_takes_a_delivery_whose_lease_ran_out(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    expired, live = deliveries_to(2)
    deliveries.claim_many([expired, live], lease_s=30)
    Delivery.update(lease_until=at(-1)).where(Delivery.id == expired).execute()

    claims = deliveries.claim_many([expired, live], lease_s=30)

    assert [(c.delivery.id, c.delivery.attempts) for c in claims] == [(expired, 2)]
    assert row(live).attempts == 1


def test_claim_many_of_nothing_is_nothing(sqlite_db: Any) -> None:
    assert deliveries.claim_many([], lease_s=30) == []
    assert deliveries.claim_many(["dlv_nope"], lease_s=30) == []


def test_claim_many_parks_deliveries_of_an_open_breaker_or_a_disabled_endpoint(
    one_each: Callable[[int], tuple[list[str], dict[str, str]]],
) -> None:
    (failing, disabled, healthy), to = one_each(3)
    open_breaker(failing)
    Endpoint.update(status="disabled", disabled_reason="by hand").where(
        Endpoint.id == disabled
    ).execute()

    claims = deliveries.claim_many([to[failing], to[disabled], to[healthy]], lease_s=30)

    assert [c.delivery.id for c in claims] == [to[healthy]]
    for parked in (to[failing], to[disabled]):
        stored = row(parked)
        assert (stored.status, stored.attempts, stored.lease_until) == ("parked", 0, None)
    assert row(to[healthy]).status == "delivering"


def test_claim_many_cancels_deliveries_of_a_deleted_endpoint(
    one_each: Callable[[int], tuple[list[str], dict[str, str]]],
) -> None:
    (deleted, kept), to = one_each(2)
    # Deleted after the claim's caller was handed the id (deleting through the API cancels too).
    Endpoint.update(deleted_at=utcnow()).where(Endpoint.id == deleted).execute()

    claims = deliveries.claim_many([to[deleted], to[kept]], lease_s=30)

    assert [c.delivery.id for c in claims] == [to[kept]]
    cancelled = row(to[deleted])
    assert (cancelled.status, cancelled.attempts, cancelled.lease_until) == ("cancelled", 0, None)
    assert cancelled.last_error == "endpoint is not active"


def test_claim_many_cancels_deliveries_of_an_unverified_endpoint_with_its_reason(
    one_each: Callable[[int], tuple[list[str], dict[str, str]]],
) -> None:
    (unverified,), to = one_each(1)
    Endpoint.update(status="unverified", disabled_reason="awaiting verification").where(
        Endpoint.id == unverified
    ).execute()

    assert deliveries.claim_many([to[unverified]], lease_s=30) == []

    assert (row(to[unverified]).status, row(to[unverified]).last_error) == (
        "cancelled",
        "awaiting verification",
    )


def test_a_half_open_breaker_lets_one_delivery_of_the_batch_through_as_the_probe(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    endpoint_id = create_endpoint()["id"]
    ids = deliveries_to(4)
    set_breaker(endpoint_id, "half_open")

    claims = deliveries.claim_many(ids, lease_s=30)

    assert len(claims) == 1
    probe = claims[0].delivery.id
    assert EndpointHealth.get_by_id(endpoint_id).probe_delivery_id == probe
    assert row(probe).status == "delivering"
    assert sorted(row(d).status for d in ids if d != probe) == ["parked"] * 3


def test_a_probe_taken_by_another_worker_in_between_is_given_back(
    create_endpoint: CreateEndpoint,
    deliveries_to: Callable[[int], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint_id = create_endpoint()["id"]
    [delivery_id] = deliveries_to(1)
    set_breaker(endpoint_id, "half_open")
    admit = health.admit

    def admit_then_lose_the_race(*args: Any, **kwargs: Any) -> bool:
        admitted = admit(*args, **kwargs)
        # Another worker claims the delivery between the SELECT and the UPDATE.
        Delivery.update(status="delivering", attempts=1, lease_until=at(300)).where(
            Delivery.id == delivery_id
        ).execute()
        return admitted

    monkeypatch.setattr(health, "admit", admit_then_lose_the_race)

    assert deliveries.claim_many([delivery_id], lease_s=30) == []

    assert EndpointHealth.get_by_id(endpoint_id).probe_delivery_id is None
    assert row(delivery_id).attempts == 1


# --- record_many ------------------------------------------------------------------------


def test_record_many_moves_successes_with_the_facts_of_their_own_attempts(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    first, second, third = deliveries_to(3)
    # `second` failed once already: its delivery must end with attempt 2's facts, not attempt 1's.
    attempt(second, outcome(503, error_class="http_status", error_detail="HTTP 503"))
    Delivery.update(status="queued").where(Delivery.id == second).execute()
    claims = deliveries.claim_many([first, second, third], lease_s=30)
    assert [c.delivery.attempts for c in claims] == [1, 2, 1]
    started = [utcnow() - dt.timedelta(seconds=s) for s in (3, 2, 1)]
    answers = [
        Outcome(started[n], 10.0 + n, status_code=code, response_body=f"ok {n}")
        for n, code in enumerate((200, 201, 204))
    ]

    decisions = record(list(zip(claims, answers, strict=True)))

    assert decisions == [Decision("succeed")] * 3
    for claimed, answer in zip(claims, answers, strict=True):
        stored = row(claimed.delivery.id)
        assert stored.status == "succeeded"
        assert (stored.lease_until, stored.next_attempt_at) == (None, None)
        assert stored.last_attempt_at == answer.started_at
        assert stored.last_status_code == answer.status_code
        assert stored.last_error is None
        mine = Attempt.get(
            (Attempt.delivery_id == claimed.delivery.id)
            & (Attempt.number == claimed.delivery.attempts)
        )
        assert (mine.status_code, mine.outcome, mine.response_body) == (
            answer.status_code,
            "success",
            answer.response_body,
        )
    assert Attempt.select().where(Attempt.delivery_id == second).count() == 2


def test_record_many_stores_a_success_a_retry_and_a_quarantine_in_one_call(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    ok, retried, exhausted = deliveries_to(3)
    attempt(exhausted, outcome(500, error_class="http_status"))
    Delivery.update(status="queued").where(Delivery.id == exhausted).execute()
    claims = deliveries.claim_many([ok, retried, exhausted], lease_s=30)
    answers = [
        outcome(200),
        outcome(503, error_class="http_status", error_detail="HTTP 503"),
        outcome(500, error_class="http_status", error_detail="HTTP 500"),
    ]

    decisions = record(list(zip(claims, answers, strict=True)), schedule=[60])

    assert decisions == [
        Decision("succeed"),
        Decision("retry", delay_s=60.0),
        Decision("quarantine", reason="exhausted"),
    ]
    assert row(ok).status == "succeeded" and row(ok).last_status_code == 200
    scheduled = row(retried)
    assert (scheduled.status, scheduled.lease_until) == ("scheduled", None)
    assert close_to(scheduled.next_attempt_at, at(60))
    assert (scheduled.last_status_code, scheduled.last_error) == (503, "HTTP 503")
    quarantined = row(exhausted)
    assert (quarantined.status, quarantined.attempts) == ("quarantined", 2)
    assert quarantined.quarantine_reason == "exhausted"
    assert quarantined.quarantined_at is not None and quarantined.next_attempt_at is None
    assert (quarantined.last_status_code, quarantined.last_error) == (500, "HTTP 500")
    numbers = [(a.delivery_id, a.number) for a in Attempt.select()]
    assert sorted(numbers) == sorted([(ok, 1), (retried, 1), (exhausted, 1), (exhausted, 2)])


def test_a_410_in_a_group_disables_only_its_endpoint(
    one_each: Callable[[int], tuple[list[str], dict[str, str]]],
) -> None:
    (gone, fine), to = one_each(2)
    claims = deliveries.claim_many([to[gone], to[fine]], lease_s=30)

    decisions = record(
        [(claims[0], outcome(410, error_class="http_status")), (claims[1], outcome(200))]
    )

    assert [d.action for d in decisions] == ["disable", "succeed"]
    assert row(to[gone]).status == "quarantined"
    assert row(to[fine]).status == "succeeded"
    assert Endpoint.get_by_id(gone).status == "disabled"
    assert Endpoint.get_by_id(fine).status == "active"


def test_a_late_answer_after_another_worker_reclaimed_keeps_its_attempt_but_moves_nothing(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    late_success, late_failure = deliveries_to(2)
    stale = deliveries.claim_many([late_success, late_failure], lease_s=30)
    Delivery.update(lease_until=at(-1)).execute()  # the first worker's leases ran out
    fresh = deliveries.claim_many([late_success, late_failure], lease_s=30)
    assert [c.delivery.attempts for c in fresh] == [2, 2]

    decisions = record([(stale[0], outcome(200)), (stale[1], outcome(503))])

    assert [d.action for d in decisions] == ["succeed", "retry"]
    for delivery_id in (late_success, late_failure):
        stored = row(delivery_id)
        assert (stored.status, stored.attempts, stored.last_status_code) == ("delivering", 2, None)
        assert [a.number for a in Attempt.select().where(Attempt.delivery_id == delivery_id)] == [1]

    record([(fresh[0], outcome(202)), (fresh[1], outcome(200))])

    assert (row(late_success).status, row(late_success).last_status_code) == ("succeeded", 202)
    assert (row(late_failure).status, row(late_failure).last_status_code) == ("succeeded", 200)


def test_the_same_answer_recorded_twice_is_stored_once(
    create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    [delivery_id] = deliveries_to(1)
    [claimed] = deliveries.claim_many([delivery_id], lease_s=30)
    answer = outcome(200)

    record([(claimed, answer)])
    record([(claimed, answer)])

    assert Attempt.select().where(Attempt.delivery_id == delivery_id).count() == 1
    assert row(delivery_id).status == "succeeded"


def test_record_of_one_attempt_still_works(
    tenant: Api, create_endpoint: CreateEndpoint, deliveries_to: Callable[[int], list[str]]
) -> None:
    create_endpoint()
    done, retried = deliveries_to(2)

    claimed = deliveries.claim(done, lease_s=30)
    assert claimed is not None
    policy = DeliveryPolicy.of(SCHEDULE, 86400, rand=lambda: 0.5)
    decision = deliveries.record(claimed, outcome(200), decide=policy.decide)
    attempt(retried, outcome(500, error_class="http_status", error_detail="HTTP 500"))

    assert decision == Decision("succeed")
    body = tenant.get("/v1/deliveries/{delivery_id}", delivery_id=done).json
    assert (body["status"], body["attempts"], body["last_status_code"]) == ("succeeded", 1, 200)
    body = tenant.get("/v1/deliveries/{delivery_id}", delivery_id=retried).json
    assert (body["status"], body["last_error"]) == ("scheduled", "HTTP 500")


# --- fan_out_and_claim ------------------------------------------------------------------


def test_fan_out_and_claim_claims_at_most_its_budget_and_leaves_the_rest_pending(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_ids = {create_endpoint()["id"] for _ in range(5)}
    event_id = publish()["id"]

    plan = fanout.fan_out_and_claim(event_id, lease_s=20, claim=3, claim_lease_s=90)

    assert len(plan.claimed) == 3 and len(plan.pending) == 2
    claimed_ids = [c.delivery.id for c in plan.claimed]
    assert set(claimed_ids).isdisjoint(plan.pending)
    rows = {d.id: d for d in Delivery.select().where(Delivery.event_id == event_id)}
    assert set(rows) == set(claimed_ids) | set(plan.pending)
    assert {d.endpoint_id for d in rows.values()} == endpoint_ids
    for claimed in plan.claimed:
        stored = rows[claimed.delivery.id]
        assert (stored.status, stored.attempts) == ("delivering", 1)
        assert close_to(stored.lease_until, at(90))
        assert (claimed.delivery.status, claimed.delivery.attempts) == ("delivering", 1)
        assert claimed.endpoint.id == stored.endpoint_id
        assert claimed.event.id == event_id
    for pending in plan.pending:
        assert (rows[pending].status, rows[pending].attempts) == ("pending", 0)
        assert close_to(rows[pending].lease_until, at(20))


def test_a_claim_from_fan_out_is_recorded_like_any_other(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    create_endpoint()
    plan = fanout.fan_out_and_claim(publish()["id"], claim=5)
    [claimed] = plan.claimed

    decisions = record([(claimed, outcome(503, error_class="http_status"))])

    assert decisions == [Decision("retry", delay_s=60.0)]
    stored = row(claimed.delivery.id)
    assert (stored.status, stored.attempts, stored.last_status_code) == ("scheduled", 1, 503)
    assert [a.number for a in Attempt.select()] == [1]


def test_fan_out_and_claim_never_claims_for_a_breaker_that_is_not_closed(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    failing, probing, recovered, fresh = (create_endpoint()["id"] for _ in range(4))
    set_breaker(failing, "open")
    set_breaker(probing, "half_open")
    set_breaker(recovered, "closed")

    plan = fanout.fan_out_and_claim(publish()["id"], claim=10)

    assert sorted(c.endpoint.id for c in plan.claimed) == sorted([recovered, fresh])
    assert sorted(row(d).endpoint_id for d in plan.pending) == sorted([failing, probing])
    assert {row(d).status for d in plan.pending} == {"pending"}
    assert EndpointHealth.get_by_id(probing).probe_delivery_id is None, "no probe taken here"


def test_fan_out_and_claim_twice_creates_nothing_and_answers_what_is_still_pending(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    for _ in range(4):
        create_endpoint()
    event_id = publish()["id"]
    first = fanout.fan_out_and_claim(event_id, claim=1)
    assert (len(first.claimed), len(first.pending)) == (1, 3)
    fanout.mark_queued(first.pending[:1], lease_s=30)

    again = fanout.fan_out_and_claim(event_id, claim=10)

    assert again.claimed == []
    assert sorted(again.pending) == sorted(first.pending[1:])
    assert Delivery.select().where(Delivery.event_id == event_id).count() == 4
    assert row(first.claimed[0].delivery.id).attempts == 1


def test_fan_out_and_claim_gives_nothing_to_an_endpoint_whose_types_do_not_match(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    invoices = create_endpoint(event_types=["invoice.*"])["id"]
    orders = create_endpoint(event_types=["order.*"])["id"]
    event_id = publish("order.paid")["id"]

    plan = fanout.fan_out_and_claim(event_id, claim=10)

    assert [c.endpoint.id for c in plan.claimed] == [orders]
    assert plan.pending == []
    stored = Delivery.select().where(Delivery.event_id == event_id)
    assert [d.endpoint_id for d in stored] == [orders]
    assert Delivery.select().where(Delivery.endpoint_id == invoices).count() == 0


def test_fan_out_without_a_claim_leaves_everything_pending(
    create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    for _ in range(3):
        create_endpoint()
    event_id = publish()["id"]

    pending = fanout.fan_out(event_id)

    assert len(pending) == 3
    assert {(row(d).status, row(d).attempts) for d in pending} == {("pending", 0)}


def test_a_late_success_and_a_failed_current_attempt_in_one_group_schedule_a_retry(
    publish: Callable[..., dict[str, Any]], create_endpoint: Callable[..., dict[str, Any]]
) -> None:
    create_endpoint()
    [delivery_id] = fanout.fan_out(publish()["id"])
    [stale] = deliveries.claim_many([delivery_id], lease_s=30)
    Delivery.update(lease_until=utcnow() - dt.timedelta(seconds=1)).execute()
    [fresh] = deliveries.claim_many([delivery_id], lease_s=30)

    deliveries.record_many(
        [
            (stale, outcome(200)),
            (fresh, outcome(500, error_class="http_status", error_detail="HTTP 500")),
        ],
        decide=DeliveryPolicy.of([60, 300], 86400, rand=lambda: 0.5).decide,
    )

    row = Delivery.get_by_id(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("scheduled", 2, 500)
    assert Attempt.select().where(Attempt.delivery_id == delivery_id).count() == 2
