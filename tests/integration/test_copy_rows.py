"""`copy_rows` on PostgreSQL: stored exactly as `insert_rows` stores, and the paths using it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee
import pytest

from actors.middleware import DeliveryPolicy
from engine.db.connect import copy_rows, insert_rows
from engine.db.models import Attempt, Delivery, Endpoint, Event, Tenant, db, utcnow
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.ids import new_id

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]

TEXTS = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "\\.",
    "",
    "ünïcødé ✓ 🦆",
    None,
]
ATTEMPT_COLUMNS = [name for name in Attempt._meta.fields if name != "id"]


REPLAY_ID = new_id("rpl")


def an_event(endpoints: int = 1) -> Event:
    """A tenant with `endpoints` endpoints for `order.paid`, and one event of that type."""
    tenant_id = new_id("ten")
    Tenant.create(id=tenant_id, name="copy")
    for _ in range(endpoints):
        Endpoint.create(
            id=new_id("ep"),
            tenant_id=tenant_id,
            url="https://example.com/hook",
            secret="whsec_x",
            event_types=["order.paid"],
        )
    return Event.create(
        id=new_id("evt"), tenant_id=tenant_id, event_type="order.paid", payload='{"a":"\\t"}'
    )


def a_delivery() -> str:
    """A new delivery, pending, of a new event; attempts refer to it."""
    return fanout.fan_out_and_claim(an_event().id).pending[0]


def attempt_rows(delivery_id: str, **changes: Any) -> list[dict[str, Any]]:
    """Attempt rows with every awkward value each column can hold."""
    rows = []
    for number, text in enumerate(TEXTS, start=1):
        row = {
            "id": new_id("att"),
            "tenant_id": Delivery.get_by_id(delivery_id).tenant_id,
            "delivery_id": delivery_id,
            "number": number,
            "started_at": dt.datetime(2026, 11, 29, 1, 2, 3, 456789 if number % 2 else 0),
            "duration_ms": [0.1, 12.345678, 1e-7, 0.0][number % 4],
            "status_code": None if number % 3 == 0 else 200 + number,
            "outcome": "success" if number % 2 else "failure",
            "error_class": None if text is None else "http_status",
            "error_detail": text,
            "response_body": text,
            "response_body_truncated": number % 2 == 0,
            "request_body": text,  # a transformed body, as sent
            "replay_id": None if number % 2 else REPLAY_ID,  # the replay that sent it
        }
        rows.append({**row, **changes})
    return rows


def stored(delivery_id: str) -> list[dict[str, Any]]:
    """The attempt rows of a delivery as read back, without their ids, by number."""
    query = Attempt.select().where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)
    return [{name: getattr(row, name) for name in ATTEMPT_COLUMNS} for row in query]


def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: row[name] for name in ATTEMPT_COLUMNS} for row in rows]


def test_copy_stores_every_value_exactly_as_the_insert_does(pg: Any) -> None:
    by_copy, by_insert = a_delivery(), a_delivery()
    copied, inserted = attempt_rows(by_copy), attempt_rows(by_insert)
    with db.atomic():
        assert copy_rows(Attempt, copied) == len(TEXTS)
        assert insert_rows(Attempt, inserted) == len(TEXTS)

    as_copied, as_inserted = stored(by_copy), stored(by_insert)
    for row in as_inserted:
        row["tenant_id"], row["delivery_id"] = copied[0]["tenant_id"], by_copy
    assert as_copied == as_inserted
    assert as_copied == without_ids(copied)


def test_an_aware_datetime_goes_the_insert_way_and_is_stored_as_the_insert_stores_it(
    pg: Any,
) -> None:
    aware = dt.datetime(2026, 11, 29, 1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    by_copy, by_insert = a_delivery(), a_delivery()
    copy_rows(Attempt, attempt_rows(by_copy, started_at=aware)[:1])
    insert_rows(Attempt, attempt_rows(by_insert, started_at=aware)[:1])

    [copied], [inserted] = stored(by_copy), stored(by_insert)
    assert copied["started_at"] == inserted["started_at"]


def test_a_nul_is_refused_as_the_insert_refuses_it(pg: Any) -> None:
    delivery_id = a_delivery()
    rows = attempt_rows(delivery_id, response_body="a\x00b")[:1]

    with pytest.raises(ValueError, match="NUL"):
        copy_rows(Attempt, rows)
    assert stored(delivery_id) == []


def test_a_json_column_goes_the_insert_way(pg: Any) -> None:
    tenant_id = new_id("ten")
    copy_rows(
        Tenant,
        [{"id": tenant_id, "name": "json", "created_at": utcnow(), "rate_limits": {"ingest": 5}}],
    )

    assert Tenant.get_by_id(tenant_id).rate_limits == {"ingest": 5}


def test_a_conflict_fails_the_whole_copy(pg: Any) -> None:
    delivery_id = a_delivery()
    [first] = attempt_rows(delivery_id)[:1]
    copy_rows(Attempt, [first])

    with pytest.raises(peewee.IntegrityError), db.atomic():
        copy_rows(Attempt, [{**first, "id": new_id("att"), "number": 2}, first])
    assert [row["number"] for row in stored(delivery_id)] == [1]


def test_fan_out_copies_its_deliveries_and_a_group_recorded_again_is_stored_once(
    pg: Any,
) -> None:
    event = an_event(endpoints=3)

    plan = fanout.fan_out_and_claim(event.id, claim=3)

    assert len(plan.claimed) == 3 and plan.pending == []
    rows = Delivery.select().where(Delivery.event_id == event.id)
    assert (
        sorted((d.status, d.attempts, d.event_type) for d in rows)
        == [("delivering", 1, "order.paid")] * 3
    )
    first, second, third = plan.claimed
    answer = Outcome(started_at=utcnow(), duration_ms=3.5, status_code=200, response_body="ok")

    def record(claims: list[deliveries.Claim]) -> None:
        policy = DeliveryPolicy.of([60], 86400)
        deliveries.record_many([(claimed, answer) for claimed in claims], decide=policy.decide)

    record([first])
    # The first again (its commit's answer lost, say) beside two new ones: the COPY
    # conflicts, and the group goes in again by INSERT, skipping the stored attempt.
    record([first, second, third])

    attempts = Attempt.select().join(Delivery, on=(Attempt.delivery_id == Delivery.id))
    assert sorted(a.delivery_id for a in attempts.where(Delivery.event_id == event.id)) == sorted(
        c.delivery.id for c in plan.claimed
    )
    assert [d.status for d in Delivery.select().where(Delivery.event_id == event.id)] == [
        "succeeded"
    ] * 3
