"""`hookline tenants event-types TENANT_ID`: what an operator sees of a tenant's catalog."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.cli import _parser
from engine.db.models import Tenant
from engine.events import catalog
from engine.ids import new_id
from engine.settings import Settings


def run(settings: Settings, *argv: str) -> int:
    args = _parser().parse_args(["tenants", "event-types", *argv])
    return int(args.handler(settings, args))


def test_it_lists_every_type_with_its_version_and_the_strict_mode(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant_id = new_id("ten")
    Tenant.create(id=tenant_id, name="acme", strict_event_types=True)
    catalog.create_event_type(tenant_id, {"name": "a.one", "schema": {"type": "object"}})
    catalog.update_event_type(tenant_id, "a.one", {"schema": {"type": "object", "required": []}})
    catalog.create_event_type(tenant_id, {"name": "a.two"})
    catalog.archive_event_type(tenant_id, "a.two")

    assert run(sqlite_settings, tenant_id) == 0
    listed = json.loads(capsys.readouterr().out)
    assert run(sqlite_settings, tenant_id, "--archived", "false") == 0
    unarchived = json.loads(capsys.readouterr().out)

    assert listed["strict_event_types"] is True
    assert [(t["name"], t["version"], t["archived"]) for t in listed["event_types"]] == [
        ("a.two", 1, True),
        ("a.one", 2, False),
    ]
    assert [t["name"] for t in unarchived["event_types"]] == ["a.one"]


def test_an_unknown_tenant_is_an_error(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(sqlite_settings, "ten_nope") == 2
    assert "no tenant" in capsys.readouterr().err
