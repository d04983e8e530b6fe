"""The scheduler's due work, fair across tenants on PostgreSQL (issue 17 §4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from engine.db.models import Delivery, Endpoint, Event, Tenant, utcnow
from engine.deliveries import schedule as scheduling
from engine.deliveries.states import QUEUED, SCHEDULED
from engine.ids import new_id
from tests.integration.conftest import private_database

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


@pytest.fixture
def own_pg() -> Iterator[Any]:
    with private_database("_fair_due") as database:
        yield database


def tenant_with_due(name: str, count: int, due_at: dt.datetime) -> list[str]:
    """A tenant, one endpoint and `count` deliveries due from `due_at` on, a millisecond apart."""
    tenant = Tenant.create(id=new_id("ten"), name=name)
    endpoint = Endpoint.create(
        id=new_id("ep"),
        tenant_id=tenant.id,
        url="https://example.com/hook",
        secret="whsec_x",
        status="active",
        updated_at=due_at,
    )
    rows, ids = [], []
    for n in range(count):
        event = Event.create(id=new_id("evt"), tenant_id=tenant.id, event_type="t", payload="{}")
        delivery_id = new_id("dlv")
        ids.append(delivery_id)
        rows.append(
            {
                "id": delivery_id,
                "tenant_id": tenant.id,
                "event_id": event.id,
                "endpoint_id": endpoint.id,
                "event_type": "t",
                "status": SCHEDULED,
                "attempts": 1,
                "next_attempt_at": due_at + dt.timedelta(milliseconds=n),
                "event_created_at": event.created_at,
                "updated_at": due_at,
            }
        )
    Delivery.insert_many(rows).execute()
    return ids


def test_a_small_tenant_s_due_rows_are_in_the_first_batch_behind_a_large_backlog(
    own_pg: Any,
) -> None:
    now = utcnow()
    # The large tenant's rows all fell due before any of the small one's.
    large = tenant_with_due("fair-large", 1000, now - dt.timedelta(minutes=10))
    small = tenant_with_due("fair-small", 5, now - dt.timedelta(seconds=5))

    first = scheduling.take_due(batch=100, lease_s=60)

    assert set(small) <= set(first)
    assert len(first) == 100
    # Turn by turn: one row of each tenant with work, then the second of each, ...
    assert set(first[:10]) >= set(small) and len(set(first[:10]) & set(large)) == 5
    # The large tenant's share is its earliest rows, in order.
    assert [i for i in first if i in set(large)] == large[:95]
    statuses = {r.id: r.status for r in Delivery.select().where(Delivery.id.in_(first))}
    assert set(statuses.values()) == {QUEUED}
    # Work-conserving: with the small tenant done, the large one fills whole batches.
    second = scheduling.take_due(batch=100, lease_s=60)
    assert second == large[95:195]
