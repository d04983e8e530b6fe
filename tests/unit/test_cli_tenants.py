"""`hookline tenants list|show|suspend|resume|delete`: the lifecycle from the shell."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.cli import _parser
from engine.db.models import EndpointFlow
from engine.settings import Settings
from engine.tenancy.tenants import create_tenant
from tests.factories import make_endpoint


def run(settings: Settings, *argv: str) -> int:
    args = _parser().parse_args(["tenants", *argv])
    return int(args.handler(settings, args))


def test_an_operator_suspends_resumes_lists_shows_and_deletes_a_tenant(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = make_endpoint()
    tenant_id = endpoint.tenant_id
    create_tenant("other")

    assert run(sqlite_settings, "suspend", tenant_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "suspended"
    assert EndpointFlow.get(EndpointFlow.endpoint_id == endpoint.id).held
    assert run(sqlite_settings, "list", "--status", "suspended") == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [tenant_id]
    assert run(sqlite_settings, "resume", tenant_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "active"
    assert run(sqlite_settings, "delete", tenant_id) == 0
    assert json.loads(capsys.readouterr().out)["deletion"]["step"] == "draining"
    assert run(sqlite_settings, "show", tenant_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "deleting"
    assert run(sqlite_settings, "list") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_an_unknown_tenant_or_a_refused_move_exits_2_saying_why(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(sqlite_settings, "show", "ten_nope") == 2
    assert "ten_nope" in capsys.readouterr().err
    tenant, _ = create_tenant("acme")
    run(sqlite_settings, "delete", tenant.id)
    assert run(sqlite_settings, "suspend", tenant.id) == 2
    assert "deleting" in capsys.readouterr().err
