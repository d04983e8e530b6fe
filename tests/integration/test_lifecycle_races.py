"""A tenant's lifecycle against the scheduler's safety net, on PostgreSQL's row locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engine.db.models import Endpoint, EndpointFlow, Tenant
from engine.deliveries import flow
from engine.lifecycle import tenants
from engine.tenancy.credentials import CredentialGeneration
from engine.tenancy.tenants import create_tenant
from tests.factories import make_endpoint
from tests.integration.conftest import private_database

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


@pytest.fixture(scope="module")
def own_pg() -> Iterator[Any]:
    # The run's shared database has the session stack's scheduler holding stragglers too.
    with private_database("_lifecycle_races") as database:
        yield database


def test_a_resume_committing_inside_the_straggler_pass_leaves_nothing_held(
    own_pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI once saw an active tenant's deliveries wait for ever: the scheduler read the tenant
    suspended, the resume committed, and the scheduler then held the endpoint."""
    tenant, _key = create_tenant("racing")
    tenants.suspend(tenant.id, credentials=CredentialGeneration())
    straggler = make_endpoint("https://example.com/late", tenant="other").id
    Endpoint.update(tenant_id=tenant.id).where(Endpoint.id == straggler).execute()
    assert not EndpointFlow.select().where(EndpointFlow.endpoint_id == straggler).exists()

    resumed = threading.Event()

    def resume() -> None:
        own_pg.connect(reuse_if_open=True)
        try:
            tenants.resume(tenant.id, credentials=CredentialGeneration())
            resumed.set()
        finally:
            own_pg.close()

    real_set_held = flow.set_held
    resumer = threading.Thread(target=resume)

    def resume_before_holding(ids: Any, held: bool, now: Any = None) -> int:
        if held and threading.current_thread() is threading.main_thread():
            resumer.start()  # the admin's resume, as the pass is about to hold
            resumer.join(timeout=1.0)
        return real_set_held(ids, held, now)

    monkeypatch.setattr(flow, "set_held", resume_before_holding)
    assert tenants.hold_stragglers() == 1
    assert not resumed.is_set(), "the resume waits for the pass's commit"
    resumer.join(timeout=10)

    assert Tenant.get_by_id(tenant.id).status == "active"
    assert EndpointFlow.get(EndpointFlow.endpoint_id == straggler).held is False
    assert tenants.hold_stragglers() == 0
