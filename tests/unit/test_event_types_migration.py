"""Migration 9 on SQLite: a key that held every scope is given the event-type scopes."""

from __future__ import annotations

from typing import Any

from engine.db.migrations import m0009_event_types as step
from engine.db.models import ApiKey, Tenant
from engine.ids import new_id


def test_a_key_of_every_scope_gets_the_new_ones_and_a_narrow_key_does_not(sqlite_db: Any) -> None:
    every, narrow, tenant_id = new_id("key"), new_id("key"), new_id("ten")
    Tenant.create(id=tenant_id, name="keys")
    for ident, scopes in ((every, list(step._EVERY_SCOPE_BEFORE)), (narrow, ["events:write"])):
        ApiKey.create(id=ident, tenant_id=tenant_id, key_hash=ident, prefix="hk_", scopes=scopes)

    for statement in step.SQLITE * 2:  # twice: the second changes nothing
        sqlite_db.execute_sql(statement)

    assert ApiKey.get_by_id(every).scopes == [
        *step._EVERY_SCOPE_BEFORE,
        "event_types:read",
        "event_types:write",
    ]
    assert ApiKey.get_by_id(narrow).scopes == ["events:write"]
