"""The delivery, endpoint and replay transition tables, and the rule that only they move a
status."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.middleware import DeliveryPolicy
from engine.db.machine import StateMachine
from engine.db.models import (
    DELIVERY_STATES,
    ENDPOINT_STATES,
    REPLAY_STATES,
    TENANT_STATES,
    Delivery,
    Endpoint,
    Tenant,
    utcnow,
)
from engine.deliveries import fanout, states
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.endpoints import crud
from engine.endpoints import states as endpoint_states
from engine.errors import TransitionError
from engine.events.ingest import EventStore
from engine.replays import backfill
from engine.replays import states as replay_states
from engine.secretbox import SecretBox
from engine.ssrf import AddressPolicy
from engine.tenancy import states as tenant_states
from engine.tenancy.tenants import create_tenant

MACHINES = [states.MACHINE, endpoint_states.MACHINE, tenant_states.MACHINE, replay_states.MACHINE]
ROOT = Path(__file__).resolve().parents[2]


def reachable(machine: StateMachine) -> set[str]:
    seen, todo = set(machine.initial), list(machine.initial)
    while todo:
        for target in machine.transitions[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_move_leads_to_a_known_state_and_says_who_makes_it(machine: StateMachine) -> None:
    for source, targets in machine.transitions.items():
        for target, who in targets.items():
            assert target in machine.states, (source, target)
            assert who.strip(), (source, target)
    assert set(machine.initial) <= set(machine.states)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_is_reachable_from_an_initial_state(machine: StateMachine) -> None:
    assert reachable(machine) == set(machine.states)


def test_the_tables_know_exactly_the_states_the_columns_hold() -> None:
    assert states.MACHINE.states == DELIVERY_STATES
    assert endpoint_states.MACHINE.states == ENDPOINT_STATES
    assert replay_states.MACHINE.states == REPLAY_STATES
    assert tenant_states.MACHINE.states == TENANT_STATES


def test_a_tenant_moves_only_along_its_table_and_deleting_is_the_end(sqlite_db: Any) -> None:
    tenant, _ = create_tenant("moves")
    where = Tenant.id == tenant.id
    with pytest.raises(TransitionError):
        tenant_states.move(where, to=tenant_states.ACTIVE, from_=(tenant_states.DELETING,))
    assert tenant_states.move(where, to="suspended", from_=("active",)) == 1
    assert tenant_states.move(where, to="suspended", from_=("active",)) == 0
    assert tenant_states.move(where, to="deleting", from_=("suspended",)) == 1
    assert tenant_states.TRANSITIONS[tenant_states.DELETING] == {}


def test_a_succeeded_delivery_leaves_only_by_a_replay() -> None:
    terminal = [state for state, exits in states.TRANSITIONS.items() if not exits]
    assert terminal == []
    assert list(states.TRANSITIONS[states.SUCCEEDED]) == [states.SCHEDULED]


def test_a_replay_ends_finished_or_cancelled_and_never_runs_again() -> None:
    ends = [state for state, exits in replay_states.TRANSITIONS.items() if not exits]
    assert ends == [replay_states.FINISHED, replay_states.CANCELLED]


def test_every_open_delivery_can_come_to_rest() -> None:
    resting = set(states.DELIVERY_STATES) - set(states.OPEN_STATES)
    for state in states.OPEN_STATES:
        machine = StateMachine("from", Delivery.status, (state,), states.TRANSITIONS)
        assert reachable(machine) & resting, state


def test_a_delivery_is_created_where_fan_out_and_backfill_create_it_and_nowhere_else() -> None:
    created = (
        fanout.CREATED_PENDING,
        fanout.CREATED_CLAIMED,
        fanout.CREATED_THROTTLED,
        fanout.CREATED_PAUSED,
        backfill.CREATED_WAITING,
    )
    assert created == states.INITIAL
    with pytest.raises(TransitionError, match="'succeeded' is not an initial state"):
        states.initial(states.SUCCEEDED)


def test_an_endpoint_enters_and_leaves_disabled_only_between_it_and_active() -> None:
    into = {
        s for s, exits in endpoint_states.TRANSITIONS.items() if endpoint_states.DISABLED in exits
    }
    assert into == {endpoint_states.ACTIVE}
    assert set(endpoint_states.TRANSITIONS[endpoint_states.DISABLED]) == {endpoint_states.ACTIVE}
    with pytest.raises(TransitionError):
        endpoint_states.initial(endpoint_states.DISABLED)


def test_a_refused_move_raises_before_any_query_is_built() -> None:
    with pytest.raises(TransitionError, match="'queued' -> 'succeeded'"):
        states.update(Delivery.id == "dlv_x", to=states.SUCCEEDED, from_=(states.QUEUED,))
    with pytest.raises(TransitionError, match="'succeeded' -> 'queued'"):
        states.check(to=states.QUEUED, from_=(states.PENDING, states.QUEUED, states.SUCCEEDED))
    with pytest.raises(TransitionError):
        states.check(to=states.QUEUED, from_=())


def test_a_move_cannot_set_the_status_among_its_other_changes() -> None:
    with pytest.raises(TypeError):
        states.update(
            Delivery.id == "dlv_x", to=states.QUEUED, from_=(states.PENDING,), status="succeeded"
        )


def test_a_move_is_conditioned_on_the_states_it_starts_from(sqlite_db: Any) -> None:
    sql, params = states.update(
        Delivery.id == "dlv_x", to=states.QUEUED, from_=(states.PENDING, states.SCHEDULED)
    ).sql()
    assert '"status" IN (' in sql
    assert params[-2:] == [states.PENDING, states.SCHEDULED]


# --- the hand-written success UPDATE and the endpoint update, on SQLite ------------------


@pytest.fixture
def claimed(sqlite_db: Any) -> deliveries.Claim:
    tenant = create_tenant("acme")[0]
    crud.create_endpoint(
        tenant.id, {"url": "https://example.com/hook"}, AddressPolicy(), SecretBox(os.urandom(32))
    )
    event, _ = EventStore().ingest_event(tenant.id, "order.paid", {}, None, fan_out_lease_s=30)
    [claim] = fanout.fan_out_and_claim(event.id, claim=1).claimed
    return claim


def test_recording_a_success_checks_the_table_before_writing(
    claimed: deliveries.Claim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(states.TRANSITIONS[states.DELIVERING], states.SUCCEEDED)
    outcome = Outcome(started_at=utcnow(), duration_ms=1.0, status_code=200)
    with pytest.raises(TransitionError, match="'delivering' -> 'succeeded'"):
        deliveries.record(claimed, outcome, decide=DeliveryPolicy.of([5.0], 3600).decide)
    assert Delivery.get_by_id(claimed.delivery.id).status == states.DELIVERING
    monkeypatch.undo()
    deliveries.record(claimed, outcome, decide=DeliveryPolicy.of([5.0], 3600).decide)
    assert Delivery.get_by_id(claimed.delivery.id).status == states.SUCCEEDED


def test_an_endpoint_update_never_writes_back_the_status_it_read(
    claimed: deliveries.Claim, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = claimed.endpoint  # read while active; disabled meanwhile by another process
    Endpoint.update(status=endpoint_states.DISABLED).where(Endpoint.id == stale.id).execute()
    monkeypatch.setattr(crud, "get_endpoint", lambda tenant_id, endpoint_id: stale)
    crud.update_endpoint(
        stale.tenant_id,
        stale.id,
        {"description": "new"},
        AddressPolicy(),
        SecretBox(os.urandom(32)),
    )
    row = Endpoint.get_by_id(stale.id)
    assert (row.status, row.description) == (endpoint_states.DISABLED, "new")


# --- only the state machines write a status ---------------------------------------------

STATUS_WRITERS = {"update", "insert", "insert_many", "create"}
# The one hand-written UPDATE of a status; its states come from `states.check`.
HAND_WRITTEN = {"engine/deliveries/record.py"}


def sources() -> Iterator[tuple[str, ast.AST]]:
    for package in ("engine", "actors", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in name:
                yield name, ast.parse(path.read_text(), name)


def writes_status(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "status":
            # A row may be created only in a state the table checked.
            value = keyword.value
            return not (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "initial"
            )
    for arg in call.args:
        if isinstance(arg, ast.Dict):
            for key in arg.keys:
                if isinstance(key, ast.Attribute) and key.attr == "status":
                    return True
                if isinstance(key, ast.Constant) and key.value == "status":
                    return True
    return False


def test_only_the_state_machines_write_a_status_column() -> None:
    offenders = []
    for name, tree in sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in STATUS_WRITERS
                and writes_status(node)
            ):
                offenders.append(f"{name}:{node.lineno}")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and 'SET "status"' in node.value
                and name not in HAND_WRITTEN
            ):
                offenders.append(f"{name}:{node.lineno} (SQL)")
    assert offenders == []
