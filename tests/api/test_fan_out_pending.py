"""Every new event waits in `event_fan_out` until exactly one fan-out takes it (migration 6)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.db.connect import insert_rows
from engine.db.models import Event, EventFanOut, Tenant, utcnow
from engine.deliveries import fanout, schedule
from engine.ids import new_id


def a_tenant() -> str:
    tenant_id = new_id("ten")
    Tenant.create(id=tenant_id, name="pending")
    return tenant_id


def pending(*event_ids: str) -> set[str]:
    rows = EventFanOut.select().where(EventFanOut.event_id.in_(list(event_ids)))
    return {row.event_id for row in rows}


def test_every_way_of_inserting_an_event_leaves_it_pending(sqlite_db: Any) -> None:
    tenant_id = a_tenant()
    later = utcnow() + dt.timedelta(seconds=30)
    by_rows = new_id("evt")
    insert_rows(
        Event,
        [
            {
                "id": by_rows,
                "tenant_id": tenant_id,
                "event_type": "order.paid",
                "payload": "{}",
                "created_at": utcnow(),
                "fan_out_lease_until": later,
            }
        ],
    )
    without_lease = Event.create(
        id=new_id("evt"), tenant_id=tenant_id, event_type="order.paid", payload="{}"
    ).id

    assert pending(by_rows, without_lease) == {by_rows, without_lease}
    leases = {row.event_id: row.lease_until for row in EventFanOut.select()}
    assert leases[by_rows] == later
    assert leases[without_lease] <= utcnow(), "no lease: due at once"


def test_the_gate_lets_exactly_one_fan_out_through(sqlite_db: Any) -> None:
    tenant_id = a_tenant()
    event_id = Event.create(
        id=new_id("evt"), tenant_id=tenant_id, event_type="order.paid", payload="{}"
    ).id

    first = fanout.fan_out_and_claim(event_id)
    again = fanout.fan_out_and_claim(event_id)

    assert pending(event_id) == set()
    assert first == fanout.FanOut([], []) and again == fanout.FanOut([], [])
    assert schedule.take_unfanned(batch=10, lease_s=30) == [], "nothing left to re-publish"


def test_an_event_whose_lease_ran_out_is_taken_again_with_a_new_lease(sqlite_db: Any) -> None:
    tenant_id = a_tenant()
    event_id = Event.create(
        id=new_id("evt"), tenant_id=tenant_id, event_type="order.paid", payload="{}"
    ).id

    assert schedule.take_unfanned(batch=10, lease_s=30) == [event_id]
    assert schedule.take_unfanned(batch=10, lease_s=30) == [], "leased again for 30 s"
    assert pending(event_id) == {event_id}, "still pending until a fan-out takes it"
