"""`hookline replays running` and `hookline replays cancel ID`: replays as an operator sees them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from api.cli import _parser
from engine.db.models import Delivery, Event, utcnow
from engine.ids import new_id
from engine.replays import replays
from engine.replays.matching import Selection
from engine.settings import Settings
from tests.factories import make_endpoint


def run(settings: Settings, *argv: str) -> int:
    args = _parser().parse_args(["replays", *argv])
    return int(args.handler(settings, args))


def a_replay(sqlite_db: Any) -> str:
    """A tenant's running replay of one succeeded delivery."""
    endpoint = make_endpoint()
    event = Event.create(
        id=new_id("evt"), tenant_id=endpoint.tenant_id, event_type="a.b", payload="{}"
    )
    Delivery.create(
        id=new_id("dlv"),
        tenant_id=endpoint.tenant_id,
        event_id=event.id,
        endpoint_id=endpoint.id,
        event_type="a.b",
        status="succeeded",
        attempts=1,
        event_created_at=event.created_at,
    )
    since = utcnow() - dt.timedelta(hours=1)
    return str(replays.start(Selection(endpoint.tenant_id, since, None), rate_per_s=5).id)


def test_running_lists_every_tenants_running_replays_and_cancel_stops_one(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_id = a_replay(sqlite_db)

    assert run(sqlite_settings, "running") == 0
    listed = json.loads(capsys.readouterr().out)["replays"]
    assert run(sqlite_settings, "cancel", replay_id) == 0
    cancelled = json.loads(capsys.readouterr().out)
    assert run(sqlite_settings, "running") == 0
    after = json.loads(capsys.readouterr().out)["replays"]

    assert [(r["id"], r["matched"], r["status"]) for r in listed] == [(replay_id, 1, "running")]
    assert listed[0]["tenant_id"].startswith("ten_")
    assert (cancelled["status"], cancelled["cancelled"]) == ("cancelled", 1)
    assert after == []


def test_cancelling_an_unknown_or_ended_replay_is_an_error(
    sqlite_settings: Settings, sqlite_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_id = a_replay(sqlite_db)
    run(sqlite_settings, "cancel", replay_id)
    capsys.readouterr()

    assert run(sqlite_settings, "cancel", "rpl_nope") == 2
    assert "not found" in capsys.readouterr().err
    assert run(sqlite_settings, "cancel", replay_id) == 2
    assert "only a running one stops" in capsys.readouterr().err
