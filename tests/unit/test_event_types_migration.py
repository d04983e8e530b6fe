"""Migrations 9 and 14 on SQLite: a key that held every scope is given the new scopes."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from engine.db.migrations import m0009_event_types, m0014_tenant_lifecycle
from engine.db.models import ApiKey, Tenant
from engine.ids import new_id


@pytest.mark.parametrize(
    ("step", "added"),
    [
        (m0009_event_types, ["event_types:read", "event_types:write"]),
        (m0014_tenant_lifecycle, ["audit:read"]),
    ],
)
def test_a_key_of_every_scope_gets_the_new_ones_and_a_narrow_key_does_not(
    sqlite_db: Any, step: ModuleType, added: list[str]
) -> None:
    every, narrow, tenant_id = new_id("key"), new_id("key"), new_id("ten")
    Tenant.create(id=tenant_id, name="keys")
    for ident, scopes in ((every, list(step._EVERY_SCOPE_BEFORE)), (narrow, ["events:write"])):
        ApiKey.create(id=ident, tenant_id=tenant_id, key_hash=ident, prefix="hk_", scopes=scopes)

    for statement in step.SQLITE * 2:  # twice: the second changes nothing
        sqlite_db.execute_sql(statement)

    assert ApiKey.get_by_id(every).scopes == [*step._EVERY_SCOPE_BEFORE, *added]
    assert ApiKey.get_by_id(narrow).scopes == ["events:write"]
