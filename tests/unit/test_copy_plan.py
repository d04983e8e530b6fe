"""The hot inserts go by COPY: every column of their rows has an encoder.

Should a column's field type change to one `copy_rows` does not write, its
rows would silently go the slower INSERT way; this says so instead.
"""

from __future__ import annotations

import datetime as dt

from engine.db.models import Attempt, Delivery, Endpoint, Event, Tenant
from engine.deliveries.client import Outcome
from engine.deliveries.fanout import new_delivery
from engine.deliveries.record import Claim, attempt_row
from engine.events.ingest import _new_row
from engine.ids import new_id
from engine.shortcuts.copy import copy_plan

NOW = dt.datetime(2026, 11, 29, 1, 2, 3)


def test_fan_out_rowsattempt_rows_and_event_rows_go_by_copy() -> None:
    event = Event(id=new_id("evt"), tenant_id="ten_1", event_type="order.paid", payload="{}")
    event.created_at = NOW
    delivery = new_delivery(event, "ep_1", NOW, NOW, "delivering", 1)
    claim = Claim(Delivery(**delivery), Endpoint(id="ep_1"), event)
    attempt = attempt_row(claim, 1, Outcome(started_at=NOW, duration_ms=1.0, status_code=200))
    stored_event = _new_row("ten_1", "order.paid", {"a": 1}, None, 30.0)

    for model, row in ((Delivery, delivery), (Attempt, attempt), (Event, stored_event)):
        plan = copy_plan(model, tuple(row))
        assert plan is not None, model.__name__
        statement, encoders = plan
        assert statement.startswith(f'COPY "{model._meta.table_name}" (')
        assert [name for name, _encode in encoders] == list(row)


def test_a_json_column_has_no_copy_plan() -> None:
    assert copy_plan(Tenant, ("id", "name", "rate_limits")) is None
