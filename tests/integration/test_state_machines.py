"""Every transition table walked on PostgreSQL: every pair of states, moved or refused."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from engine.breakers.state import Breaker
from engine.db.machine import StateMachine
from engine.db.models import AlertRecord, Delivery, Endpoint, Event, Replay, Tenant, utcnow
from engine.deliveries import states
from engine.endpoints import states as endpoint_states
from engine.errors import TransitionError
from engine.ids import new_id
from engine.replays import states as replay_states
from tests.integration.conftest import private_database

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]

BEFORE = dt.datetime(2026, 1, 1)
MOVED_AT = dt.datetime(2026, 1, 2)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[Any]:
    with private_database("_state_machines") as database:
        yield database


@pytest.fixture(scope="module")
def event(own_pg: Any) -> Event:
    """A tenant, and one event of it, for deliveries put straight into a state."""
    tenant = Tenant.create(id=new_id("ten"), name="states")
    return Event.create(id=new_id("evt"), tenant_id=tenant.id, event_type="t", payload="{}")


def an_endpoint(tenant_id: str, status: str) -> Endpoint:
    return Endpoint.create(
        id=new_id("ep"),
        tenant_id=tenant_id,
        url="https://example.com/hook",
        secret="whsec_x",
        status=status,
        updated_at=BEFORE,
    )


def a_delivery(event: Event, status: str) -> str:
    """A delivery put straight into `status`, as a test's starting point."""
    endpoint = an_endpoint(event.tenant_id, endpoint_states.ACTIVE)
    delivery_id = new_id("dlv")
    Delivery.insert(
        id=delivery_id,
        tenant_id=event.tenant_id,
        event_id=event.id,
        endpoint_id=endpoint.id,
        event_type=event.event_type,
        status=status,
        event_created_at=event.created_at,
        updated_at=BEFORE,
    ).execute()
    return delivery_id


def as_stored(model: Any, row_id: str) -> tuple[str, dt.datetime]:
    row = model.get_by_id(row_id)
    return row.status, row.updated_at


def a_replay(tenant_id: str, status: str) -> str:
    """A replay put straight into `status`."""
    replay = Replay.create(
        id=new_id("rpl"),
        tenant_id=tenant_id,
        kind="replay",
        since=BEFORE,
        rate_per_s=50,
        status=status,
        updated_at=BEFORE,
    )
    return str(replay.id)


def a_row(machine: StateMachine, event: Event, status: str) -> str:
    """A delivery, an endpoint or a replay put straight into `status`; answer its id."""
    if machine is states.MACHINE:
        return a_delivery(event, status)
    if machine is replay_states.MACHINE:
        return a_replay(event.tenant_id, status)
    return str(an_endpoint(event.tenant_id, status).id)


MACHINES = (states.MACHINE, endpoint_states.MACHINE, replay_states.MACHINE)
PAIRS = [
    pytest.param(machine, source, target, id=f"{machine.name}:{source}->{target}")
    for machine in MACHINES
    for source, target in itertools.product(machine.states, repeat=2)
]


@pytest.mark.parametrize(("machine", "source", "target"), PAIRS)
def test_a_row_moves_between_two_states_only_if_its_table_allows_it(
    event: Event, machine: StateMachine, source: str, target: str
) -> None:
    model = machine.field.model
    row_id = a_row(machine, event, source)
    where = model.id == row_id
    if target in machine.transitions[source]:
        assert machine.move(where, to=target, from_=(source,), updated_at=MOVED_AT) == 1
        assert as_stored(model, row_id) == (target, MOVED_AT)
    else:
        with pytest.raises(TransitionError):
            machine.move(where, to=target, from_=(source,), updated_at=MOVED_AT)
        assert as_stored(model, row_id) == (source, BEFORE)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_an_allowed_move_leaves_a_row_that_is_no_longer_in_its_from_state(
    event: Event, machine: StateMachine
) -> None:
    model = machine.field.model
    for source, targets in machine.transitions.items():
        for target in targets:
            for elsewhere in set(machine.states) - {source}:
                row_id = a_row(machine, event, elsewhere)
                moved = machine.move(
                    model.id == row_id, to=target, from_=(source,), updated_at=MOVED_AT
                )
                assert moved == 0, (source, target, elsewhere)
                assert as_stored(model, row_id) == (elsewhere, BEFORE)


def test_a_move_from_several_states_takes_each_of_them_and_no_other(event: Event) -> None:
    rows = {state: a_delivery(event, state) for state in states.DELIVERY_STATES}
    moved = states.move(
        Delivery.id.in_(list(rows.values())),
        to=states.CANCELLED,
        from_=states.CLAIMABLE,
        updated_at=MOVED_AT,
    )
    assert moved == len(states.CLAIMABLE)
    for state, delivery_id in rows.items():
        expected = (states.CANCELLED, MOVED_AT) if state in states.CLAIMABLE else (state, BEFORE)
        assert as_stored(Delivery, delivery_id) == expected, state


def test_disable_moves_an_active_endpoint_once_and_records_one_alert(event: Event) -> None:
    endpoint = an_endpoint(event.tenant_id, endpoint_states.ACTIVE)
    now = utcnow()
    first = endpoint_states.disable(
        endpoint, "gone", breaker=Breaker(), dedup="gone:dlv_1", now=now, parked=3
    )
    again = endpoint_states.disable(endpoint, "later", breaker=Breaker(), dedup="o1", now=now)
    row = Endpoint.get_by_id(endpoint.id)
    assert (row.status, row.disabled_reason, row.disabled_at) == ("disabled", "gone", now)
    alerts = list(AlertRecord.select().where(AlertRecord.endpoint_id == endpoint.id))
    assert [(a.id, a.kind, a.dedup) for a in alerts] == [(first, "endpoint.disabled", "gone:dlv_1")]
    assert (alerts[0].facts["reason"], alerts[0].facts["parked"]) == ("gone", 3)
    assert again is None


def test_disable_leaves_an_unverified_endpoint_as_it_is(event: Event) -> None:
    endpoint = an_endpoint(event.tenant_id, endpoint_states.UNVERIFIED)
    assert (
        endpoint_states.disable(endpoint, "gone", breaker=Breaker(), dedup="x", now=utcnow())
        is None
    )
    assert as_stored(Endpoint, endpoint.id) == (endpoint_states.UNVERIFIED, BEFORE)
    assert not AlertRecord.select().where(AlertRecord.endpoint_id == endpoint.id).exists()


def test_enable_makes_a_disabled_endpoint_active_and_forgets_why(event: Event) -> None:
    endpoint = an_endpoint(event.tenant_id, endpoint_states.ACTIVE)
    endpoint_states.disable(endpoint, "gone", breaker=Breaker(), dedup="x", now=utcnow())
    assert endpoint_states.enable(endpoint.id, now=MOVED_AT) is True
    row = Endpoint.get_by_id(endpoint.id)
    assert (row.status, row.disabled_reason, row.disabled_at) == ("active", None, None)
    assert row.updated_at == MOVED_AT


def test_enable_only_touches_an_active_endpoint_and_never_an_unverified_one(event: Event) -> None:
    active = an_endpoint(event.tenant_id, endpoint_states.ACTIVE)
    unverified = an_endpoint(event.tenant_id, endpoint_states.UNVERIFIED)
    assert endpoint_states.enable(active.id, now=MOVED_AT) is False
    assert endpoint_states.enable(unverified.id, now=MOVED_AT) is False
    assert as_stored(Endpoint, active.id) == (endpoint_states.ACTIVE, MOVED_AT)
    assert as_stored(Endpoint, unverified.id) == (endpoint_states.UNVERIFIED, BEFORE)
