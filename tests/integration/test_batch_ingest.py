"""A batch of events in, a signed webhook per event out: real API, worker and scheduler
processes on PostgreSQL and RabbitMQ, delivering to a receiver on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from engine.db.models import Event, Tenant, db
from engine.errors import InvalidInputError
from engine.events.ingest import Accepted, EventStore
from engine.ids import new_id
from tests.integration.conftest import Api
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


def test_a_batch_of_100_events_is_delivered_once_each(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant("batcher")
    status, endpoint = api.call("POST", "/v1/endpoints", {"url": receiver.url("/batch")}, key=key)
    assert status == 201, endpoint
    events = [{"event_type": "order.paid", "payload": {"n": n}} for n in range(100)]

    status, body = api.call("POST", "/v1/events/batch", {"events": events}, key=key)

    assert status == 207, body
    assert [result["status"] for result in body["results"]] == [202] * 100
    event_ids = [result["id"] for result in body["results"]]
    receiver.wait_for("/batch", 100, timeout_s=30)
    time.sleep(0.5)  # anything sent twice would have arrived by now
    got = receiver.received("/batch")
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(event_ids)
    payloads = [Webhook(endpoint["secret"]).verify(r.body, r.headers)["data"] for r in got]
    assert sorted(p["n"] for p in payloads) == list(range(100))


def a_tenant() -> str:
    tenant_id = new_id("ten")
    Tenant.create(id=tenant_id, name="batch")
    return tenant_id


def test_on_postgresql_a_batch_answers_each_key_with_its_first_event(pg: Any) -> None:
    store, tenant_id, announced = EventStore(), a_tenant(), []
    [before] = store.ingest_batch(tenant_id, [("order.paid", {"n": 0}, "k-0")], fan_out_lease_s=30)
    items = [
        ("order.paid", {"n": 1}, "k-0"),
        ("order.paid", {"n": 2}, None),
        ("order.paid", {"n": 3}, "k-1"),
        ("order.paid", {"n": 4}, "k-1"),
        ("not a type", {"n": 5}, None),
    ]

    answers = store.ingest_batch(tenant_id, items, fan_out_lease_s=30, announce=announced.append)

    assert isinstance(before, Accepted) and before.created
    unkeyed, first = answers[1], answers[2]
    assert isinstance(unkeyed, Accepted) and isinstance(first, Accepted)
    assert answers[:4] == [
        (before.id, False),
        (unkeyed.id, True),
        (first.id, True),
        (first.id, False),
    ]
    assert isinstance(answers[4], InvalidInputError)
    assert announced == [[unkeyed.id, first.id]]
    stored = Event.select().where(Event.tenant_id == tenant_id).order_by(Event.id)
    assert {e.id: e.payload for e in stored} == {
        before.id: '{"n":0}',
        unkeyed.id: '{"n":2}',
        first.id: '{"n":3}',
    }


def test_on_postgresql_racing_batches_store_each_key_once(pg: Any) -> None:
    store, tenant_id = EventStore(), a_tenant()
    items = [("order.paid", {"n": n}, f"k-{n}") for n in range(50)]
    start = threading.Barrier(2)

    def send(_: int) -> list[Any]:
        with db.connection_context():
            start.wait()
            return store.ingest_batch(tenant_id, items, fan_out_lease_s=30)

    with ThreadPoolExecutor(max_workers=2) as pool:
        one, other = pool.map(send, range(2))

    assert [a.id for a in one] == [a.id for a in other]
    assert all(a.created != b.created for a, b in zip(one, other, strict=True))
    assert Event.select().where(Event.tenant_id == tenant_id).count() == 50
