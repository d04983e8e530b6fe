"""`/v1/replays`: dry runs, replays paced in event order, progress, cancel, and recover."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from actors.flow import GIVEN_BACK, FlowRecorder
from actors.middleware import DeliveryPolicy
from engine import secretbox
from engine.db.models import Delivery, ReplayLane, utcnow
from engine.deliveries import fanout, slots
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.replays import pacing, replays
from engine.settings import Settings
from tests.api.support import Api, assert_problem, attempt, outcome

REPLAYS = "/v1/replays"
REPLAY = "/v1/replays/{replay_id}"
CANCEL = "/v1/replays/{replay_id}/cancel"
ATTEMPTS = "/v1/deliveries/{delivery_id}/attempts"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
RECOVER = "/v1/endpoints/{endpoint_id}/recover"
SINCE = "2000-01-01T00:00:00Z"

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


def delivered(publish: Publish, event_type: str, status: int) -> str:
    """An event fanned out to the tenant's endpoints; its one delivery attempted once."""
    [delivery_id] = fanout.fan_out(publish(event_type)["id"])
    attempt(
        delivery_id,
        outcome(status, error_class=None if status < 300 else "http_status"),
        max_age_s=0,
    )
    return delivery_id


@pytest.fixture
def history(publish: Publish, create_endpoint: CreateEndpoint) -> tuple[str, list[str], list[str]]:
    """An endpoint with three succeeded and two quarantined deliveries, in event order."""
    endpoint_id = create_endpoint()["id"]
    ok = [delivered(publish, "order.paid", 200) for _ in range(3)]
    failed = [delivered(publish, "order.refunded", 500) for _ in range(2)]
    return endpoint_id, ok, failed


def pace_all(at: dt.datetime) -> list[str]:
    """Everything the lanes let go at `at` (one pass)."""
    return pacing.pace(lease_s=30, batch=500, now=at).ids


def slot_gaps(ids: list[str]) -> list[float]:
    """Seconds between the slots these queued deliveries carry, in order."""
    at = [Delivery.get_by_id(i).next_attempt_at for i in ids]
    return [round((b - a).total_seconds(), 4) for a, b in itertools.pairwise(at)]


def test_a_dry_run_counts_by_endpoint_and_type_and_changes_nothing(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id, ok, failed = history

    result = tenant.post(REPLAYS, {"since": SINCE, "dry_run": True})

    assert result.status_code == 200
    assert result.json == {
        "matched": 5,
        "by_endpoint": {endpoint_id: 5},
        "by_event_type": {"order.paid": 3, "order.refunded": 2},
    }
    statuses = [Delivery.get_by_id(i).status for i in ok + failed]
    assert statuses == ["succeeded"] * 3 + ["quarantined"] * 2
    assert tenant.get(REPLAYS).json["data"] == []


@pytest.mark.parametrize(
    "filters",
    [{}, {"statuses": ["quarantined"]}, {"event_types": ["order.paid"]}, {"until": SINCE}],
)
def test_a_replay_takes_what_its_dry_run_counted(
    tenant: Api, history: tuple[str, list[str], list[str]], filters: dict[str, Any]
) -> None:
    endpoint_id = history[0]
    body = {"since": "1999-01-01T00:00:00Z", "endpoint_id": endpoint_id, **filters}

    counted = tenant.post(REPLAYS, {**body, "dry_run": True}).json["matched"]
    result = tenant.post(REPLAYS, body)

    assert result.status_code == 202
    assert result.json["matched"] == counted
    waiting = Delivery.select().where(Delivery.replay_id == result.json["id"])
    assert waiting.count() == counted
    assert {(d.status, d.next_attempt_at) for d in waiting} <= {("scheduled", None)}


def test_a_replay_goes_out_paced_in_event_order_and_records_itself_on_each_attempt(
    tenant: Api, history: tuple[str, list[str], list[str]], sqlite_settings: Settings
) -> None:
    _, ok, failed = history

    created = tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 10}).json
    now = utcnow()
    first = pace_all(now)
    later = pace_all(now + dt.timedelta(seconds=0.06))
    rest = pace_all(now + dt.timedelta(seconds=0.2))
    done = pace_all(now + dt.timedelta(seconds=1))

    assert created["status"] == "running" and created["id"].startswith("rpl_")
    assert (created["matched"], created["queued"], created["finished_at"]) == (5, 0, None)
    every = round(slots.spacing_s(10, pacing.LANE_SHARE), 4)
    assert first == ok, "slots within a quarter second of the first: 3 at 10/s"
    assert Delivery.get_by_id(ok[0]).next_attempt_at == now + dt.timedelta(seconds=slots.LEAD_S)
    assert later == [], "the next free slot is not yet within reach"
    assert rest == failed, "event order, nothing twice"
    assert slot_gaps(ok + failed) == [every] * 4, "one slot after another, at 90 % of 10/s"
    assert done == []
    assert not ReplayLane.get_by_id(history[0]).waiting, "an empty lane stops waiting"
    claimed = deliveries.claim(failed[0], lease_s=30)
    assert claimed is not None
    box = secretbox.from_settings(sqlite_settings)
    request = deliveries.build_request(claimed, user_agent="t", timestamp=1, box=box)
    assert request.headers["webhook-id"] == claimed.event.id, "receivers can de-duplicate"
    deliveries.record(claimed, outcome(500), decide=DeliveryPolicy.of([60], 0).decide)
    for delivery_id in ok + failed[1:]:
        attempt(delivery_id, outcome(200))
    attempts = tenant.get(ATTEMPTS, delivery_id=ok[0]).json["data"]
    assert [a["replay_id"] for a in attempts] == [created["id"], None], "newest first"
    assert replays.finish_done() == [created["id"]]
    body = tenant.get(REPLAY, replay_id=created["id"]).json
    assert (body["status"], body["queued"], body["succeeded"], body["failed"]) == (
        "finished",
        5,
        4,
        1,
    )
    assert body["finished_at"] is not None
    assert [r["id"] for r in tenant.get(REPLAYS).json["data"]] == [created["id"]]


def test_a_lane_delivery_is_taken_with_its_slot_and_one_reached_late_goes_back_to_its_lane(
    tenant: Api, history: tuple[str, list[str], list[str]], sqlite_settings: Settings
) -> None:
    endpoint_id, ok, failed = history
    tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 10})
    now = utcnow()
    paced = pacing.pace(lease_s=30, batch=500, now=now)
    attempts_before = Delivery.get_by_id(ok[1]).attempts

    [claimed] = deliveries.claim_many([ok[1]], lease_s=30, released=True)
    box = secretbox.from_settings(sqlite_settings)
    request = deliveries.build_request(claimed, user_agent="t", timestamp=1, box=box)
    given = pacing.give_back([(ok[1], endpoint_id, claimed.delivery.lease_until)], 50)
    back, lane = Delivery.get_by_id(ok[1]), ReplayLane.get_by_id(endpoint_id)
    again = pace_all(now + dt.timedelta(seconds=1))

    assert (paced.at_slot, paced.to_flow) == (ok, []), "no flow control: sent at their slots"
    slot = now + dt.timedelta(seconds=slots.LEAD_S + slots.spacing_s(10, pacing.LANE_SHARE))
    assert claimed.slot_at == slot, "the claim takes it with its slot"
    assert (request.slot_at, request.slot_late_s) == (slot, slots.LATE_S)
    assert given == 1
    assert (back.status, back.next_attempt_at, back.attempts) == (
        "scheduled",
        None,
        attempts_before,
    ), "waiting in its lane again, its attempt not spent"
    assert (lane.waiting, lane.rate_per_s) == (True, 10), "at the rate it had"
    assert again == [ok[1], *failed], "the oldest event first"


def test_the_workers_recorder_gives_a_lane_delivery_that_missed_its_slot_back_to_its_lane(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id, ok, _ = history
    tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 10})
    [late] = deliveries.claim_many(
        pacing.pace(lease_s=30, batch=1).at_slot, lease_s=30, released=True
    )
    published: list[str] = []

    class Publisher:
        def enqueue_many(self, kind: str, ids: list[str], **options: Any) -> int:
            published.extend(ids)
            return len(ids)

    recorder = FlowRecorder(Settings(), Publisher(), DeliveryPolicy.of([60], 0).decide)  # type: ignore[arg-type]
    missed = Outcome(utcnow(), 0.0, error_class=slots.MISSED, error_detail="0.2 s late")

    [decision] = recorder([(late, missed)])

    assert (late.delivery.id, late.flow) == (ok[0], None), "a lane's, no flow control"
    assert decision is GIVEN_BACK
    row = Delivery.get_by_id(ok[0])
    assert (row.status, row.next_attempt_at) == ("scheduled", None), "in its lane again"
    assert ReplayLane.get_by_id(endpoint_id).waiting
    assert published == [], "no flow release: the lane gives it a new slot"


def test_cancel_gives_back_what_was_not_yet_queued_and_sends_what_was(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    _, ok, failed = history
    created = tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 10}).json
    sent = pace_all(utcnow())

    result = tenant.post(CANCEL, replay_id=created["id"])

    assert result.status_code == 200
    assert (result.json["status"], result.json["queued"], result.json["cancelled"]) == (
        "cancelled",
        3,
        2,
    )
    assert result.json["finished_at"] is not None
    assert [Delivery.get_by_id(i).status for i in ok + failed] == [
        "queued",
        "queued",
        "queued",
        "quarantined",
        "quarantined",
    ], "what was queued goes on; the rest is back where it was"
    assert sent == ok
    assert Delivery.get_by_id(failed[0]).replay_id is None
    assert pace_all(utcnow() + dt.timedelta(seconds=5)) == [], "nothing more goes out"
    assert_problem(tenant.post(CANCEL, replay_id=created["id"]), 409)


def test_a_delivery_queued_before_the_cancel_and_given_back_after_it_is_sent_and_counted(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id, ok, failed = history
    created = tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 10}).json
    [late] = deliveries.claim_many(
        pacing.pace(lease_s=30, batch=1).at_slot, lease_s=30, released=True
    )
    cancelled = tenant.post(CANCEL, replay_id=created["id"]).json

    # Its worker reached it after its slot: back in its lane, though the replay stopped.
    given = pacing.give_back([(late.delivery.id, endpoint_id, late.delivery.lease_until)], 10)
    followed = tenant.get(REPLAY, replay_id=created["id"]).json

    assert given == 1
    assert (cancelled["queued"], cancelled["cancelled"]) == (1, 4)
    assert (followed["status"], followed["queued"]) == ("cancelled", 1), "still counted as sent"
    assert pace_all(utcnow() + dt.timedelta(seconds=5)) == [ok[0]], "what was queued is sent"
    assert [Delivery.get_by_id(i).status for i in ok[1:] + failed] == [
        "succeeded",
        "succeeded",
        "quarantined",
        "quarantined",
    ]


def test_two_replays_to_one_endpoint_share_its_lane_at_the_slower_rate(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id = history[0]

    tenant.post(REPLAYS, {"since": SINCE, "statuses": ["succeeded"], "rate_per_s": 200})
    tenant.post(REPLAYS, {"since": SINCE, "statuses": ["quarantined"], "rate_per_s": 20})

    assert ReplayLane.get_by_id(endpoint_id).rate_per_s == 20
    sent = pace_all(utcnow())
    assert slot_gaps(sent) == [round(slots.spacing_s(20, pacing.LANE_SHARE), 4)] * (len(sent) - 1)
    assert len(sent) == 5, "a quarter second of slots at 20/s: 5"


def test_an_endpoints_own_throttle_caps_its_lane(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id = history[0]
    tenant.patch(ENDPOINT, {"rate_limit_per_s": 1}, endpoint_id=endpoint_id)
    tenant.post(REPLAYS, {"since": SINCE, "rate_per_s": 1000})
    now = utcnow()

    first = pacing.pace(lease_s=30, batch=500, now=now)
    sent = first.ids + pace_all(now + dt.timedelta(seconds=0.5))

    assert len(sent) == 1, "1/s: one, then none half a second later"
    assert (first.at_slot, first.to_flow) == ([], sent), "its flow control takes it from there"


def test_a_replay_that_matches_nothing_is_finished_at_once(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    created = tenant.post(REPLAYS, {"since": "2999-01-01T00:00:00Z"})

    assert created.status_code == 202
    assert (created.json["status"], created.json["matched"]) == ("finished", 0)


def test_another_tenant_sees_and_stops_none_of_it(
    tenant: Api, stranger: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id = history[0]
    created = tenant.post(REPLAYS, {"since": SINCE}).json

    assert stranger.get(REPLAYS).json["data"] == []
    assert_problem(stranger.get(REPLAY, replay_id=created["id"]), 404)
    assert_problem(stranger.post(CANCEL, replay_id=created["id"]), 404)
    assert_problem(stranger.post(REPLAYS, {"since": SINCE, "endpoint_id": endpoint_id}), 404)
    dry = stranger.post(REPLAYS, {"since": SINCE, "dry_run": True}).json
    assert dry == {"matched": 0, "by_endpoint": {}, "by_event_type": {}}


def test_the_list_pages_newest_first(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    ids = [tenant.post(REPLAYS, {"since": "2999-01-01T00:00:00Z"}).json["id"] for _ in range(3)]

    first = tenant.get(REPLAYS, params={"limit": 2}).json
    second = tenant.get(REPLAYS, params={"limit": 2, "cursor": first["next_cursor"]}).json

    assert [r["id"] for r in first["data"] + second["data"]] == ids[::-1]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("doc", "status", "field"),
    [
        ({}, 422, "since"),
        ({"since": "yesterday"}, 400, "since"),
        ({"since": SINCE, "until": "1999-01-01T00:00:00Z"}, 422, "until"),
        ({"since": SINCE, "statuses": ["scheduled"]}, 422, "statuses.0"),
        ({"since": SINCE, "statuses": []}, 422, "statuses"),
        ({"since": SINCE, "event_types": []}, 422, "event_types"),
        ({"since": SINCE, "rate_per_s": 0}, 422, "rate_per_s"),
        ({"since": SINCE, "rate_per_s": 10_001}, 422, "rate_per_s"),
        ({"since": SINCE, "dry_run": "yes"}, 422, "dry_run"),
        ({"since": SINCE, "endpoint": "ep_x"}, 422, "endpoint"),
        ({"since": SINCE, "endpoint_id": "ep_nope"}, 404, None),
    ],
)
def test_a_bad_replay_is_a_problem_naming_the_field(
    tenant: Api, doc: dict[str, Any], status: int, field: str | None
) -> None:
    assert_problem(tenant.post(REPLAYS, doc), status, field)


def test_recover_is_a_replay_of_the_quarantine_named_in_location(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    endpoint_id, _, failed = history

    result = tenant.post(RECOVER, {"since": SINCE}, endpoint_id=endpoint_id)

    assert (result.status_code, result.json) == (202, {"recovered": 2})
    location = result.headers["location"]
    assert location.startswith("/v1/replays/rpl_")
    replay = tenant.get(REPLAY, replay_id=location.rsplit("/", 1)[1]).json
    assert (replay["kind"], replay["statuses"], replay["matched"]) == (
        "recover",
        ["quarantined"],
        2,
    )
    assert pace_all(utcnow()) == failed, "paced like any replay, and only the quarantine"


def test_a_replayed_delivery_starts_its_retry_schedule_and_age_over(
    tenant: Api, history: tuple[str, list[str], list[str]]
) -> None:
    _, _, failed = history
    policy = DeliveryPolicy.of([60], 3600, rand=lambda: 0.5)  # one retry, then exhausted
    old = utcnow() - dt.timedelta(days=2)
    Delivery.update(attempts=2, event_created_at=old).where(Delivery.id == failed[0]).execute()

    tenant.post(REPLAYS, {"since": "1999-01-01T00:00:00Z", "statuses": ["quarantined"]})
    pace_all(utcnow())
    claimed = deliveries.claim(failed[0], lease_s=30)
    assert claimed is not None
    decision = deliveries.record(claimed, outcome(503), decide=policy.decide)

    assert (decision.action, decision.delay_s) == ("retry", 60)
    assert Delivery.get_by_id(failed[0]).attempts == 3, "its attempts still count up"
