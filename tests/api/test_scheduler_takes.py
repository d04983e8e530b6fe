"""The scheduler's takes: each moves what it finds to `queued` in one statement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from engine.db.models import DELIVERING, PENDING, QUEUED, SCHEDULED, Delivery, utcnow
from engine.deliveries import fanout
from engine.deliveries import schedule as scheduling
from tests.api.support import attempt, outcome

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


def _set(delivery_id: str, **changes: Any) -> None:
    Delivery.update(**changes).where(Delivery.id == delivery_id).execute()


def test_take_due_moves_only_due_rows_earliest_first_and_at_most_a_batch(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    for _ in range(4):
        create_endpoint()
    ids = sorted(fanout.fan_out(publish()["id"]))
    now = utcnow()
    for n, delivery_id in enumerate(ids[:3]):  # due 3 s, 2 s and 1 s ago
        _set(delivery_id, status=SCHEDULED, next_attempt_at=now - dt.timedelta(seconds=3 - n))
    _set(ids[3], status=SCHEDULED, next_attempt_at=now + dt.timedelta(hours=1))

    first = scheduling.take_due(batch=2, lease_s=60)
    second = scheduling.take_due(batch=2, lease_s=60)

    assert sorted(first) == ids[:2]
    assert second == [ids[2]]
    assert scheduling.take_due(batch=2, lease_s=60) == []
    rows = {row.id: row for row in Delivery.select().where(Delivery.id.in_(ids))}
    assert {rows[i].status for i in ids[:3]} == {QUEUED}
    assert all(rows[i].lease_until > now + dt.timedelta(seconds=55) for i in ids[:3])
    assert rows[ids[3]].status == SCHEDULED


def test_take_expired_finds_lost_rows_in_every_unfinished_state(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    for _ in range(3):
        create_endpoint()
    pending, queued, delivering = sorted(fanout.fan_out(publish()["id"]))
    attempt(delivering, outcome(500))  # an attempt made and recorded: now scheduled
    past = utcnow() - dt.timedelta(seconds=1)
    _set(pending, status=PENDING, lease_until=past)
    _set(queued, status=QUEUED, lease_until=past)
    _set(delivering, status="delivering", lease_until=past)

    taken = scheduling.take_expired(batch=10, lease_s=60)

    assert sorted(taken) == sorted([pending, queued, delivering])
    assert scheduling.take_expired(batch=10, lease_s=60) == []


def test_expire_leases_hands_every_leased_row_to_the_next_pass_and_nothing_else(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    for _ in range(4):
        create_endpoint()
    unfanned = publish()["id"]  # its fan-out is leased, as the API stored it
    pending, queued, delivering, finished = sorted(fanout.fan_out(publish()["id"]))
    later = utcnow() + dt.timedelta(minutes=5)
    _set(pending, lease_until=later)
    _set(queued, status=QUEUED, lease_until=later)
    _set(delivering, status=DELIVERING, lease_until=later)
    _set(finished, status=SCHEDULED, lease_until=later, next_attempt_at=later)
    assert scheduling.take_expired(batch=10, lease_s=60) == []
    assert scheduling.take_unfanned(batch=10, lease_s=60) == []

    moved = scheduling.expire_leases()

    assert moved == (3, 1)
    assert sorted(scheduling.take_expired(batch=10, lease_s=60)) == [pending, queued, delivering]
    assert scheduling.take_unfanned(batch=10, lease_s=60) == [unfanned]
    assert Delivery.get_by_id(finished).status == SCHEDULED
