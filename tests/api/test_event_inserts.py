"""Events of concurrent requests share one INSERT; each request still gets its own answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import peewee
import pytest

from engine import events
from engine.ids import new_id
from engine.models import Event, db, utcnow
from engine.tenants import create_tenant


@pytest.fixture
def tenant_id(sqlite_db: Any) -> str:
    return create_tenant("Acme")[0].id


def ingest(tenant_id: str, n: int) -> tuple[Event, bool]:
    return events.ingest_event(tenant_id, "order.paid", {"n": n}, None, fan_out_lease_s=30)


def row(tenant_id: str, event_type: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": new_id("evt"),
        "tenant_id": tenant_id,
        "event_type": event_type,
        "payload": "{}",
        "idempotency_key": None,
        "created_at": now,
        "fan_out_lease_until": now,
    }


def test_concurrent_events_are_all_stored_each_answered_with_its_own(
    sqlite_db: Any, tenant_id: str
) -> None:
    def one(n: int) -> tuple[str, int]:
        with sqlite_db.connection_context():
            event, created = ingest(tenant_id, n)
            assert created
            return event.id, n

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(200)))

    stored = {row.id: row.payload for row in Event.select()}
    assert len(stored) == 200
    assert all(stored[event_id] == f'{{"n":{n}}}' for event_id, n in answers)


def test_a_row_the_database_refuses_fails_only_its_own_request(
    tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = events.insert_rows

    def refuse_poison(model: Any, rows: Any, **kwargs: Any) -> int:
        if any(row["event_type"] == "poison" for row in rows):
            raise peewee.IntegrityError("refused")
        return real(model, rows, **kwargs)

    monkeypatch.setattr(events, "insert_rows", refuse_poison)

    failures = events._insert_together([row(tenant_id, t) for t in ("a", "poison", "b")])

    assert [type(f) for f in failures] == [type(None), peewee.IntegrityError, type(None)]
    assert sorted(e.event_type for e in Event.select()) == ["a", "b"]


def test_an_event_ingested_inside_a_callers_transaction_rolls_back_with_it(tenant_id: str) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.atomic():
        ingest(tenant_id, 1)
        raise Abort

    assert Event.select().count() == 0


def test_a_database_out_of_reach_fails_the_request(
    tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(model: Any, rows: Any, **kwargs: Any) -> int:
        raise peewee.OperationalError("server closed the connection")

    monkeypatch.setattr(events, "insert_rows", unreachable)

    with pytest.raises(peewee.OperationalError):
        ingest(tenant_id, 1)
