"""`engine.events.catalog_cache`: snapshots trusted for a bound, reloaded on a new generation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import InvalidInputError
from engine.events.catalog_cache import CatalogCache, StoredType
from engine.events.payload_schema import SchemaViolationError
from tests.factories import Clock

SCHEMA = {"type": "object", "required": ["amount"]}


class FakeReader:
    """Catalogs in memory, counting the reads a cache makes."""

    def __init__(self) -> None:
        self.generations: dict[str, int] = {}
        self.strict: dict[str, bool] = {}
        self.catalogs: dict[str, list[StoredType]] = {}
        self.generation_reads = 0
        self.type_reads = 0

    def generation(self, tenant_id: str) -> tuple[int, bool]:
        self.generation_reads += 1
        return self.generations.get(tenant_id, 0), self.strict.get(tenant_id, False)

    def types(self, tenant_id: str) -> list[StoredType]:
        self.type_reads += 1
        return list(self.catalogs.get(tenant_id, []))

    def declare(self, tenant_id: str, name: str, schema: Any, version: int = 1, **kw: Any) -> None:
        kept = [t for t in self.catalogs.get(tenant_id, []) if t.name != name]
        text = None if schema is None else json.dumps(schema)
        kept.append(StoredType(f"etype_{name}", name, version, kw.get("archived", False), text))
        self.catalogs[tenant_id] = kept
        self.generations[tenant_id] = self.generations.get(tenant_id, 0) + 1


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(reader: FakeReader, clock: Clock) -> CatalogCache:
    return CatalogCache(2.0, reader=reader, clock=clock)


def test_a_tenant_without_types_is_read_once_per_bound_not_per_event(
    cache: CatalogCache, reader: FakeReader, clock: Clock
) -> None:
    cache.load("ten_1")
    for _ in range(1000):
        snapshot = cache.fresh("ten_1")
        assert snapshot is not None
        assert snapshot.judge("order.paid", {}) is None
        clock.now += 0.001

    assert (reader.generation_reads, reader.type_reads) == (1, 1)


def test_a_snapshot_is_trusted_for_the_bound_and_no_longer(
    cache: CatalogCache, clock: Clock
) -> None:
    cache.load("ten_1")

    clock.now += 1.999
    assert cache.fresh("ten_1") is not None
    clock.now += 0.001
    assert cache.fresh("ten_1") is None


def test_a_change_elsewhere_is_seen_after_the_bound(
    cache: CatalogCache, reader: FakeReader, clock: Clock
) -> None:
    assert cache.snapshot("ten_1").judge("invoice.paid", {}) is None
    reader.declare("ten_1", "invoice.paid", SCHEMA)  # another process, another host

    clock.now += 1.0
    assert cache.snapshot("ten_1").judge("invoice.paid", {}) is None  # within the bound
    clock.now += 1.0
    with pytest.raises(SchemaViolationError) as caught:
        cache.snapshot("ten_1").judge("invoice.paid", {})

    assert caught.value.violations[0].message == '"amount" is a required property'
    assert cache.snapshot("ten_1").judge("invoice.paid", {"amount": 1}) == 1


def test_an_unchanged_generation_reads_no_types_and_compiles_nothing(
    cache: CatalogCache, reader: FakeReader, clock: Clock
) -> None:
    reader.declare("ten_1", "invoice.paid", SCHEMA)
    first = cache.load("ten_1")

    clock.now += 5
    second = cache.load("ten_1")

    assert (reader.generation_reads, reader.type_reads) == (2, 1)
    assert second.types["invoice.paid"].validator is first.types["invoice.paid"].validator
    assert second.checked_at == clock.now


def test_a_reload_recompiles_only_the_schemas_that_changed(
    cache: CatalogCache, reader: FakeReader, clock: Clock
) -> None:
    reader.declare("ten_1", "a", SCHEMA)
    reader.declare("ten_1", "b", SCHEMA)
    first = cache.load("ten_1")
    reader.declare("ten_1", "b", {"type": "object"}, version=2)

    clock.now += 2
    second = cache.load("ten_1")

    assert second.types["a"].validator is first.types["a"].validator
    assert second.types["b"].validator is not first.types["b"].validator
    assert second.judge("b", {}) == 2


def test_forget_makes_this_process_read_at_once(cache: CatalogCache, reader: FakeReader) -> None:
    cache.load("ten_1")
    reader.declare("ten_1", "invoice.paid", SCHEMA)

    cache.forget("ten_1")

    assert cache.fresh("ten_1") is None
    assert cache.snapshot("ten_1").types["invoice.paid"].version == 1


def test_strict_mode_refuses_unregistered_and_archived_types(
    cache: CatalogCache, reader: FakeReader
) -> None:
    reader.declare("ten_1", "kept", None)
    reader.declare("ten_1", "gone", SCHEMA, archived=True)
    reader.strict["ten_1"] = True

    snapshot = cache.snapshot("ten_1")

    assert snapshot.judge("kept", {}) is None
    for name in ("unknown", "gone"):
        with pytest.raises(InvalidInputError) as caught:
            snapshot.judge(name, {})
        assert caught.value.field == "event_type"


def test_an_archived_types_schema_does_not_apply_without_strict_mode(
    cache: CatalogCache, reader: FakeReader
) -> None:
    reader.declare("ten_1", "gone", SCHEMA, archived=True)

    assert cache.snapshot("ten_1").judge("gone", {}) is None


def test_strict_mode_is_seen_within_the_bound_though_the_generation_stays(
    cache: CatalogCache, reader: FakeReader, clock: Clock
) -> None:
    cache.load("ten_1")
    reader.strict["ten_1"] = True

    clock.now += 2

    assert cache.snapshot("ten_1").strict is True


def test_tenants_are_cached_apart_and_the_oldest_goes_first(
    reader: FakeReader, clock: Clock
) -> None:
    cache = CatalogCache(2.0, reader=reader, clock=clock, max_tenants=2)
    for tenant in ("ten_1", "ten_2", "ten_3"):
        cache.load(tenant)

    assert cache.fresh("ten_1") is None
    assert cache.fresh("ten_2") is not None and cache.fresh("ten_3") is not None


def test_a_deep_payload_meets_its_recursive_schema_without_a_crash(
    cache: CatalogCache, reader: FakeReader
) -> None:
    reader.declare("ten_1", "tree", {"properties": {"child": {"$ref": "#", "type": "object"}}})
    payload: dict[str, Any] = {}
    for _ in range(2000):
        payload = {"child": payload}

    assert cache.snapshot("ten_1").judge("tree", payload) == 1
    with pytest.raises(SchemaViolationError) as caught:
        cache.snapshot("ten_1").judge("tree", {"child": {"child": 3}})
    assert caught.value.violations[0].pointer == "/child/child"
