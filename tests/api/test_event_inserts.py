"""Events of concurrent requests share one INSERT; each request still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import peewee
import pytest
from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import Event, db, utcnow
from engine.errors import InvalidInputError
from engine.events import ingest as events
from engine.events.ingest import EventStore
from engine.ids import new_id
from engine.tenancy.tenants import create_tenant
from tests.api.support import Api, Recorder
from tests.factories import ADMIN_TOKEN, event_body


@pytest.fixture
def tenant_id(sqlite_db: Any) -> str:
    return create_tenant("Acme")[0].id


@pytest.fixture
def store() -> EventStore:
    return EventStore()


def ingest(store: EventStore, tenant_id: str, n: int) -> tuple[Event, bool]:
    return store.ingest_event(tenant_id, "order.paid", {"n": n}, None, fan_out_lease_s=30)


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


def refuse_rows(
    monkeypatch: pytest.MonkeyPatch, poisoned: Callable[[dict[str, Any]], bool]
) -> None:
    """Make the database refuse any INSERT or COPY holding a poisoned row."""
    for name in ("insert_rows", "copy_rows"):
        monkeypatch.setattr(events, name, _refusing(getattr(events, name), poisoned))


def _refusing(
    real: Callable[..., int], poisoned: Callable[[dict[str, Any]], bool]
) -> Callable[..., int]:
    def refuse(model: Any, rows: Any, **kwargs: Any) -> int:
        if any(poisoned(row) for row in rows):
            raise peewee.IntegrityError("refused")
        return real(model, rows, **kwargs)

    return refuse


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every INSERT of events fails as when PostgreSQL is out of reach."""

    def unreachable(model: Any, rows: Any, **kwargs: Any) -> int:
        raise peewee.OperationalError("server closed the connection")

    monkeypatch.setattr(events, "insert_rows", unreachable)
    monkeypatch.setattr(events, "copy_rows", unreachable)


def test_concurrent_events_are_all_stored_each_answered_with_its_own(
    sqlite_db: Any, tenant_id: str, store: EventStore
) -> None:
    def one(n: int) -> tuple[str, int]:
        with sqlite_db.connection_context():
            event, created = ingest(store, tenant_id, n)
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
    refuse_rows(monkeypatch, lambda row: row["event_type"] == "poison")

    announced: list[list[str]] = []
    rows = [row(tenant_id, t) for t in ("a", "poison", "b")]

    items: list[tuple[dict[str, Any], Any]] = [(r, announced.append) for r in rows]
    failures = events._insert_together(items)
    events._announce_inserted(items, failures)

    assert [type(f) for f in failures] == [type(None), peewee.IntegrityError, type(None)]
    assert sorted(e.event_type for e in Event.select()) == ["a", "b"]
    assert announced == [[rows[0]["id"], rows[2]["id"]]], "only what went in, in one call"


def test_an_event_ingested_inside_a_callers_transaction_rolls_back_with_it(
    tenant_id: str, store: EventStore
) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.atomic():
        ingest(store, tenant_id, 1)
        raise Abort

    assert Event.select().count() == 0


@pytest.mark.usefixtures("database_down")
def test_a_database_out_of_reach_fails_the_request(tenant_id: str, store: EventStore) -> None:
    with pytest.raises(peewee.OperationalError):
        ingest(store, tenant_id, 1)


def test_events_stored_together_are_announced_together_before_anyone_is_answered(
    sqlite_db: Any, tenant_id: str, store: EventStore
) -> None:
    announced: list[list[str]] = []
    committed_when_announced: list[bool] = []

    def announce(ids: list[str]) -> None:
        committed_when_announced.append(Event.select().where(Event.id.in_(ids)).count() == len(ids))
        announced.append(ids)

    def one(n: int) -> str:
        with sqlite_db.connection_context():
            event, created = store.ingest_event(
                tenant_id, "order.paid", {"n": n}, None, fan_out_lease_s=30, announce=announce
            )
            assert created
            assert any(event.id in ids for ids in list(announced)), "announced before answered"
            return event.id

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(one, range(200)))

    flat = [event_id for ids in announced for event_id in ids]
    assert sorted(flat) == sorted(answered), "each new event announced exactly once"
    assert all(committed_when_announced)


def test_an_event_with_a_key_is_announced_once_and_its_repeat_not_at_all(
    tenant_id: str, store: EventStore
) -> None:
    announced: list[list[str]] = []

    def keyed() -> tuple[Event, bool]:
        return store.ingest_event(
            tenant_id, "order.paid", {}, "k-1", fan_out_lease_s=30, announce=announced.append
        )

    first, created = keyed()
    again, repeated = keyed()

    assert (created, repeated) == (True, False) and again.id == first.id
    assert announced == [[first.id]]


def test_an_announce_that_raises_costs_no_request_its_event(
    tenant_id: str, logs: list[dict[str, Any]], store: EventStore
) -> None:
    def broken(ids: list[str]) -> None:
        raise ConnectionError("broker gone")

    event, created = store.ingest_event(
        tenant_id, "order.paid", {}, None, fan_out_lease_s=30, announce=broken
    )

    assert created and Event.get_by_id(event.id)
    assert [e["event"] for e in logs if e.get("event_ids") == [event.id]] == ["announce_failed"]


def test_nothing_is_announced_inside_a_callers_transaction(
    tenant_id: str, store: EventStore
) -> None:
    announced: list[list[str]] = []

    with db.atomic():
        event, created = store.ingest_event(
            tenant_id, "order.paid", {}, None, fan_out_lease_s=30, announce=announced.append
        )

    assert created and Event.get_by_id(event.id)
    assert announced == [], "a worker could not have seen the row yet"


# --- from coroutines: `ingest_unkeyed`, the API's path -------------------------------------


def test_concurrent_coroutines_share_inserts_each_answered_after_its_announce(
    sqlite_db: Any, tenant_id: str, store: EventStore
) -> None:
    announced: list[list[str]] = []
    committed_when_announced: list[bool] = []

    def announce(ids: list[str]) -> None:
        with sqlite_db.connection_context():
            count = Event.select().where(Event.id.in_(ids)).count()
        committed_when_announced.append(count == len(ids))
        announced.append(ids)

    async def one(n: int) -> tuple[str, int]:
        event = await store.ingest_unkeyed(
            tenant_id, "order.paid", {"n": n}, fan_out_lease_s=30, announce=announce
        )
        assert any(event.id in ids for ids in list(announced)), "announced before answered"
        return event.id, n

    async def main() -> list[tuple[str, int]]:
        return list(await asyncio.gather(*(one(n) for n in range(300))))

    answers = asyncio.run(main())

    stored = {row.id: row.payload for row in Event.select()}
    assert len(stored) == 300
    assert all(stored[event_id] == f'{{"n":{n}}}' for event_id, n in answers)
    flat = [event_id for ids in announced for event_id in ids]
    assert sorted(flat) == sorted(stored), "each new event announced exactly once"
    assert len(announced) < 300, "announced in batches"
    assert all(committed_when_announced)


def test_a_coroutine_whose_row_is_refused_fails_alone(
    tenant_id: str, monkeypatch: pytest.MonkeyPatch, store: EventStore
) -> None:
    refuse_rows(monkeypatch, lambda row: row["payload"] == '{"poison":true}')

    async def main() -> list[Any]:
        payloads = [{"n": 1}, {"poison": True}, {"n": 2}]
        calls = [
            store.ingest_unkeyed(tenant_id, "order.paid", p, fan_out_lease_s=30) for p in payloads
        ]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    first, poisoned, last = asyncio.run(main())

    assert isinstance(poisoned, peewee.IntegrityError)
    assert {e.id for e in Event.select()} == {first.id, last.id}


@pytest.mark.usefixtures("database_down")
def test_a_coroutine_gets_the_error_of_a_database_out_of_reach(
    tenant_id: str, store: EventStore
) -> None:
    with pytest.raises(peewee.OperationalError):
        asyncio.run(store.ingest_unkeyed(tenant_id, "order.paid", {}, fan_out_lease_s=30))


def test_a_coroutine_with_a_bad_event_type_is_refused_before_anything_is_stored(
    tenant_id: str, store: EventStore
) -> None:
    with pytest.raises(InvalidInputError):
        asyncio.run(store.ingest_unkeyed(tenant_id, "no spaces", {}, fan_out_lease_s=30))
    assert Event.select().count() == 0


# --- the store the app is given --------------------------------------------------------


def test_the_app_stores_events_through_the_store_it_is_given(
    sqlite_settings: Any, sqlite_db: Any
) -> None:
    class Counting(EventStore):
        def __init__(self) -> None:
            super().__init__()
            self.unkeyed = 0

        async def ingest_unkeyed(self, *args: Any, **kwargs: Any) -> Event:
            self.unkeyed += 1
            return await super().ingest_unkeyed(*args, **kwargs)

    store = Counting()
    app = create_app(sqlite_settings, database=sqlite_db, enqueue=Recorder(), events=store)
    admin = Api(TestClient(app)).as_key(ADMIN_TOKEN)
    key = admin.post("/v1/tenants", {"name": "Acme"}).json["api_key"]

    result = admin.as_key(key).post("/v1/events", event_body("order.paid"))

    assert result.status_code == 202, result.text
    assert store.unkeyed == 1
    assert Event.get_by_id(result.json["id"])
