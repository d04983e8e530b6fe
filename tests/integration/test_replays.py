"""Replays, cancel, pause and resume on the real processes, measured at the receiver.

A replay of 2,000 deliveries at 100/s (its dry run counting what it takes), a cancel
that stops one, and a FIFO endpoint's order kept through a pause and its resume.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from engine.db.models import Delivery, Endpoint, Event, EventFanOut, db, utcnow
from engine.ids import new_id
from tests.integration.conftest import Api, Processes
from tests.integration.test_delivery import create_endpoint
from tests.integration.test_flow_control import most_in_any_window, send_batch
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def an_hour_ago() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()


def replay(api: Api, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    return api.call("POST", "/v1/replays", body, key=key)


def wait_replay(api: Api, key: str, replay_id: str, status: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        code, body = api.call("GET", f"/v1/replays/{replay_id}", key=key)
        assert code == 200, body
        if body["status"] == status or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def delivered_once(api: Api, key: str, receiver: Receiver, path: str, count: int) -> dict[str, Any]:
    """An endpoint at `path` whose `count` past events (a minute ago, in order) succeeded.

    Written straight into the database: what is measured is the replay, not the first run.
    """
    endpoint = create_endpoint(api, key, receiver.url(path))
    tenant_id = Endpoint.get_by_id(endpoint["id"]).tenant_id
    start = utcnow() - dt.timedelta(minutes=1)
    events = [
        {
            "id": new_id("evt"),
            "tenant_id": tenant_id,
            "event_type": "order.paid",
            "payload": json.dumps({"n": n}),
            "created_at": start + dt.timedelta(milliseconds=n),
        }
        for n in range(count)
    ]
    with db.atomic():
        Event.insert_many(events).execute()
        EventFanOut.delete().where(EventFanOut.event_id.in_([e["id"] for e in events])).execute()
        Delivery.insert_many(
            [
                {
                    "id": new_id("dlv"),
                    "tenant_id": tenant_id,
                    "event_id": e["id"],
                    "endpoint_id": endpoint["id"],
                    "event_type": e["event_type"],
                    "status": "succeeded",
                    "attempts": 1,
                    "event_created_at": e["created_at"],
                }
                for e in events
            ]
        ).execute()
    return endpoint


def test_a_replay_of_2000_deliveries_at_100_per_s_never_passes_110_in_any_second(
    stack: tuple[Api, Processes], receiver: Receiver, pg: Any
) -> None:
    api, _ = stack
    key = api.tenant()
    endpoint = delivered_once(api, key, receiver, "/replay", 2000)
    body = {"endpoint_id": endpoint["id"], "since": an_hour_ago(), "statuses": ["succeeded"]}

    code, dry = replay(api, key, {**body, "dry_run": True})
    code, created = replay(api, key, {**body, "rate_per_s": 100})
    got = receiver.wait_for("/replay", 2000, timeout_s=90)

    assert code == 202, created
    assert dry["matched"] == created["matched"] == 2000, "the dry run counted what it took"
    arrivals = sorted(r.at for r in got)
    after_first = [at for at in arrivals if at >= arrivals[0] + 1.0]
    most, elapsed = most_in_any_window(after_first, 1.0), arrivals[-1] - arrivals[0]
    print(f"replay of 2,000 at 100/s: busiest second {most}, all in {elapsed:.1f} s")
    assert most <= 110, f"100/s + 10 % in every second: {most} in {elapsed:.1f} s"
    assert elapsed >= (2000 - 10) / 100, "paced, not sent at once"
    # A loose floor: the rate is a ceiling, not a stall. An idle box takes 21 s; CI, with both
    # passes side by side on two cores, took 38, 43, 46 s (the lanes undershoot when the
    # scheduler's clock thread is starved, as the README says), so a third of the rate.
    assert elapsed <= 60, f"the rate is used, not undershot: {elapsed:.1f}s"
    sent = [(r.headers["webhook-id"], json.loads(r.body)["data"]["n"]) for r in got]
    events = {
        e.id: json.loads(e.payload)["n"]
        for e in Event.select().where(Event.id.in_([i for i, _ in sent]))
    }
    assert len(sent) == len(events) == 2000, "each event once"
    assert all(events[i] == n for i, n in sent), "its event id as webhook-id"
    finished = wait_replay(api, key, created["id"], "finished", timeout_s=15)
    assert (finished["status"], finished["queued"], finished["succeeded"]) == (
        "finished",
        2000,
        2000,
    )


def test_cancel_stops_a_replay(stack: tuple[Api, Processes], receiver: Receiver, pg: Any) -> None:
    api, _ = stack
    key = api.tenant()
    endpoint = delivered_once(api, key, receiver, "/cancel", 300)
    body = {"endpoint_id": endpoint["id"], "since": an_hour_ago(), "rate_per_s": 50}
    code, created = replay(api, key, body)
    assert code == 202, created
    receiver.wait_for("/cancel", 25, timeout_s=20)

    code, cancelled = api.call("POST", f"/v1/replays/{created['id']}/cancel", key=key)
    assert code == 200, cancelled
    receiver.wait_for("/cancel", cancelled["queued"], timeout_s=20)  # what was queued goes
    time.sleep(1.5)

    assert len(receiver.received("/cancel")) == cancelled["queued"], "and nothing more"
    assert cancelled["status"] == "cancelled"
    assert cancelled["queued"] + cancelled["cancelled"] == 300
    assert cancelled["cancelled"] >= 100, "300 at 50/s take 6 s: most were still waiting"
    back = Delivery.select().where(
        (Delivery.endpoint_id == endpoint["id"]) & (Delivery.status == "succeeded")
    )
    assert back.count() == 300, "given back as they were, or sent again"


def test_a_fifo_endpoint_keeps_event_order_through_pause_and_resume(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    endpoint = create_endpoint(api, key, receiver.url("/paused"), ordering="fifo")
    code, paused = api.call("POST", f"/v1/endpoints/{endpoint['id']}/pause", key=key)
    assert (code, paused["paused"]) == (200, True), paused
    send_batch(api, key, 40)
    time.sleep(1.0)
    assert receiver.received("/paused") == [], "a paused endpoint receives nothing"
    code, listed = api.call(
        "GET", f"/v1/deliveries?endpoint_id={endpoint['id']}&status=paused&limit=100", key=key
    )
    assert len(listed["data"]) == 40, listed

    code, resumed = api.call("POST", f"/v1/endpoints/{endpoint['id']}/resume", key=key)
    got = receiver.wait_for("/paused", 40, timeout_s=30)

    assert (code, resumed["resumed"]) == (200, 40), resumed
    assert [json.loads(r.body)["data"]["n"] for r in got] == list(range(40)), "event order"


def test_a_backfill_sends_exactly_the_missing_matching_events(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    create_endpoint(api, key, receiver.url("/first"))
    amounts = [5, 150, 20, 300, 100]
    for n, amount in enumerate(amounts):
        event = {"event_type": "order.paid", "payload": {"n": n, "amount": amount}}
        assert api.call("POST", "/v1/events", event, key=key)[0] == 202
    api.call(
        "POST", "/v1/events", {"event_type": "user.created", "payload": {"amount": 999}}, key=key
    )
    receiver.wait_for("/first", len(amounts) + 1, timeout_s=20)
    late = create_endpoint(
        api,
        key,
        receiver.url("/late"),
        event_types=["order.*"],
        filter={"data.amount": {"$gte": 100}},
    )
    body = {"since": an_hour_ago(), "rate_per_s": 50}
    path = f"/v1/endpoints/{late['id']}/backfill"

    _, dry = api.call("POST", path, {**body, "dry_run": True}, key=key)
    code, created = api.call("POST", path, body, key=key)
    got = receiver.wait_for("/late", 3, timeout_s=20)
    time.sleep(0.5)
    _, again = api.call("POST", path, body, key=key)

    assert code == 202, created
    assert (dry["matched"], created["matched"], created["kind"]) == (3, 3, "backfill")
    # Released oldest first, but sent concurrently: only a FIFO endpoint's arrive in order.
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.received("/late")) == [1, 3, 4]
    assert len(got) == 3, "exactly the missing matching events"
    assert (again["matched"], again["status"]) == (0, "finished"), "nothing is missing now"
