"""The admin's tenant lifecycle on SQLite: list, read, suspend, resume, delete and erase."""

from __future__ import annotations

from typing import Any

import pytest
from falcon.testing import TestClient

from actors.middleware import DeliveryPolicy
from api.app import create_app
from engine.db.models import MODELS, Delivery, EndpointFlow, Tenant, db
from engine.deliveries import fanout, flow, schedule
from engine.deliveries import record as deliveries
from engine.lifecycle import erase
from engine.lifecycle import tenants as lifecycle
from engine.tenancy.credentials import CredentialCache, CredentialGeneration
from engine.tenancy.limiter import Limiter
from tests.api.conftest import MakeApi
from tests.api.support import Api, assert_problem, outcome
from tests.erasure import leftovers
from tests.factories import ADMIN_TOKEN, endpoint_body, event_body

TENANTS = "/v1/tenants"
TENANT = "/v1/tenants/{tenant_id}"
SUSPEND = "/v1/tenants/{tenant_id}/suspend"
RESUME = "/v1/tenants/{tenant_id}/resume"
POLICY = DeliveryPolicy.of([60], 86400, rand=lambda: 0.5)


def created(admin: Api, name: str) -> tuple[str, Api]:
    body = admin.post(TENANTS, {"name": name}).json
    return body["id"], admin.as_key(body["api_key"])


def test_the_admin_lists_tenants_newest_first_paged_and_by_status(admin: Api) -> None:
    ids = [created(admin, f"T{n}")[0] for n in range(3)]
    admin.post(SUSPEND, tenant_id=ids[1])

    first = admin.get(TENANTS, params={"limit": 2}).json
    second = admin.get(TENANTS, params={"limit": 2, "cursor": first["next_cursor"]}).json
    suspended = admin.get(TENANTS, params={"status": "suspended"}).json

    assert [t["id"] for t in first["data"] + second["data"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert [t["id"] for t in suspended["data"]] == [ids[1]]
    assert suspended["data"][0]["status"] == "suspended"


def test_a_bad_status_filter_is_400_naming_it(admin: Api) -> None:
    assert_problem(admin.get(TENANTS, params={"status": "gone"}), 400, "status")


def test_the_admin_reads_a_tenant_and_an_unknown_one_is_404(admin: Api) -> None:
    tenant_id, _ = created(admin, "Acme")

    body = admin.get(TENANT, tenant_id=tenant_id).json
    assert (body["id"], body["name"], body["status"], body["deletion"]) == (
        tenant_id,
        "Acme",
        "active",
        None,
    )
    assert_problem(admin.get(TENANT, tenant_id="ten_unknown"), 404)
    assert_problem(admin.post(SUSPEND, tenant_id="ten_unknown"), 404)


@pytest.mark.parametrize("template", [TENANTS, TENANT, SUSPEND, RESUME])
def test_a_tenant_key_cannot_use_the_lifecycle_routes(admin: Api, template: str) -> None:
    tenant_id, tenant = created(admin, "Acme")
    method = "POST" if template in (SUSPEND, RESUME) else "GET"
    assert_problem(tenant.call(method, template, tenant_id=tenant_id), 401)


def test_a_suspended_tenant_is_refused_403_and_works_again_once_resumed(admin: Api) -> None:
    tenant_id, tenant = created(admin, "Acme")
    _, other = created(admin, "Globex")

    assert admin.post(SUSPEND, tenant_id=tenant_id).json["status"] == "suspended"
    for method, template in (("GET", "/v1/endpoints"), ("POST", "/v1/events")):
        doc = event_body("order.paid") if method == "POST" else None
        refused = tenant.call(method, template, doc=doc) if doc else tenant.get(template)
        problem = assert_problem(refused, 403)
        assert problem["type"] == "urn:hookline:problem:tenant-suspended"
    assert other.get("/v1/endpoints").status_code == 200

    assert admin.post(RESUME, tenant_id=tenant_id).json["status"] == "active"
    assert tenant.get("/v1/endpoints").status_code == 200


def test_suspending_twice_or_resuming_an_active_tenant_changes_nothing(admin: Api) -> None:
    tenant_id, _ = created(admin, "Acme")
    assert admin.post(RESUME, tenant_id=tenant_id).json["status"] == "active"
    first = admin.post(SUSPEND, tenant_id=tenant_id).json
    again = admin.post(SUSPEND, tenant_id=tenant_id).json
    assert first == again


def test_a_cached_credential_is_refused_as_soon_as_its_tenant_is_suspended(
    make_api: MakeApi, sqlite_settings: Any, sqlite_db: Any, recorder: Any, event_store: Any
) -> None:
    cache = CredentialCache(3600.0, generation=CredentialGeneration())
    limiter = Limiter(sqlite_settings)
    try:
        app = create_app(
            sqlite_settings,
            database=sqlite_db,
            enqueue=recorder,
            events=event_store,
            limiter=limiter,
            credentials=cache,
        )
        admin = Api(TestClient(app), ADMIN_TOKEN)
        tenant_id, tenant = created(admin, "Acme")
        assert tenant.get("/v1/endpoints").status_code == 200  # now cached for an hour
        admin.post(SUSPEND, tenant_id=tenant_id)
        assert_problem(tenant.get("/v1/endpoints"), 403)
    finally:
        limiter.close()


def test_suspending_a_tenant_being_deleted_is_409(admin: Api) -> None:
    tenant_id, _ = created(admin, "Acme")
    assert admin.delete(TENANT, tenant_id=tenant_id).status_code == 202
    assert_problem(admin.post(SUSPEND, tenant_id=tenant_id), 409)
    assert_problem(admin.post(RESUME, tenant_id=tenant_id), 409)


def test_a_suspended_tenants_deliveries_wait_throttled_and_go_in_order_once_resumed(
    admin: Api,
) -> None:
    tenant_id, tenant = created(admin, "Acme")
    endpoint_id = tenant.post("/v1/endpoints", endpoint_body()).json["id"]
    events = [tenant.post("/v1/events", event_body("order.paid")).json["id"] for _ in range(3)]
    fanout.fan_out(events[0])  # before: pending, published
    admin.post(SUSPEND, tenant_id=tenant_id)
    fanout.fan_out(events[1])  # a fan-out while suspended
    fanout.fan_out(events[2])

    ids = [d.id for d in Delivery.select().order_by(Delivery.event_created_at, Delivery.event_id)]
    assert deliveries.claim_many(ids, lease_s=30) == [], "the claim holds them all"
    assert {d.status for d in Delivery.select()} == {"throttled"}
    assert flow.release(lease_s=60) == [], "nothing is released while suspended"
    assert schedule.take_due(batch=10, lease_s=30) == []

    admin.post(RESUME, tenant_id=tenant_id)
    released = flow.release(lease_s=60)
    assert released == ids, "oldest event first"
    claims = deliveries.claim_many(released, lease_s=30, released=True)
    assert [c.delivery.id for c in claims] == ids
    assert EndpointFlow.get(EndpointFlow.endpoint_id == endpoint_id).held is False


def test_an_endpoint_created_as_the_suspension_committed_is_held_by_the_scheduler(
    admin: Api,
) -> None:
    tenant_id, tenant = created(admin, "Acme")
    admin.post(SUSPEND, tenant_id=tenant_id)
    Tenant.update(status="active").where(Tenant.id == tenant_id).execute()
    late = tenant.post("/v1/endpoints", endpoint_body()).json["id"]
    Tenant.update(status="suspended").where(Tenant.id == tenant_id).execute()

    assert lifecycle.hold_stragglers() == 1
    assert EndpointFlow.get(EndpointFlow.endpoint_id == late).held
    assert lifecycle.hold_stragglers() == 0


def populated(admin: Api, name: str) -> tuple[str, Api]:
    """A tenant with an endpoint, event types, keys, events, deliveries and attempts."""
    tenant_id, tenant = created(admin, name)
    endpoint_id = tenant.post("/v1/endpoints", endpoint_body()).json["id"]
    tenant.post("/v1/keys", {"name": "ci", "scopes": ["events:write"]})
    tenant.post("/v1/event-types", {"name": "order.paid"})
    for _ in range(3):
        event_id = tenant.post("/v1/events", event_body("order.paid")).json["id"]
        for claimed in fanout.fan_out_and_claim(event_id, claim=5).claimed:
            deliveries.record(claimed, outcome(500), decide=POLICY.decide)
    tenant.patch("/v1/endpoints/{endpoint_id}", {"description": "x"}, endpoint_id=endpoint_id)
    return tenant_id, tenant


def ids_of(tenant_id: str) -> set[str]:
    """Every id of the tenant's rows, in every table with a `tenant_id`."""
    found = {tenant_id}
    for model in erase.tenant_tables():
        key = model._meta.primary_key
        found |= {
            getattr(r, key.name) for r in model.select(key).where(model.tenant_id == tenant_id)
        }
    return found


def rows_of(tenant_id: str) -> dict[str, int]:
    return {
        m._meta.table_name: m.select().where(m.tenant_id == tenant_id).count()
        for m in erase.tenant_tables()
        if m.select().where(m.tenant_id == tenant_id).count()
    }


def test_deleting_a_tenant_refuses_it_and_erases_every_row_in_batches(admin: Api) -> None:
    tenant_id, tenant = populated(admin, "Acme")
    other_id, _ = populated(admin, "Globex")
    before_other = rows_of(other_id)
    assert {"attempt", "delivery", "event", "endpoint", "api_key", "event_type"} <= set(
        rows_of(tenant_id)
    )

    ids = ids_of(tenant_id)
    answer = admin.delete(TENANT, tenant_id=tenant_id)
    assert answer.status_code == 202
    assert answer.json["status"] == "deleting"
    assert answer.json["deletion"]["rows_deleted"] == 0
    problem = assert_problem(tenant.get("/v1/endpoints"), 403)
    assert problem["type"] == "urn:hookline:problem:tenant-deleting"
    assert admin.delete(TENANT, tenant_id=tenant_id).json["status"] == "deleting", "repeatable"

    passes = 0
    while erase.erase_some(batch=2, budget_s=0.0):
        passes += 1
        progress = admin.get(TENANT, tenant_id=tenant_id)
        if progress.status_code == 200:
            assert progress.json["deletion"]["rows_deleted"] > 0
    assert passes > 5, "batches of two rows"
    assert_problem(admin.get(TENANT, tenant_id=tenant_id), 404)
    assert rows_of(tenant_id) == {}
    assert rows_of(other_id) == before_other
    assert leftovers(db.obj, ids) == {}, "no column of any table names one of its ids"
    assert leftovers(db.obj, ids_of(other_id)) != {}
    assert_problem(tenant.get("/v1/endpoints"), 401)


def test_every_table_either_has_a_tenant_id_or_is_erased_through_another_or_is_tenant_free() -> (
    None
):
    names = {m._meta.table_name for m in MODELS}
    with_tenant = {m._meta.table_name for m in erase.tenant_tables()} | {"tenant"}
    unclassified = names - with_tenant - set(erase.THROUGH_OTHERS) - set(erase.TENANT_FREE)
    assert unclassified == set(), "say how erase.py finds a deleted tenant's rows in it"


def test_a_draining_tenant_waits_for_its_claims_in_flight(admin: Api) -> None:
    tenant_id, tenant = created(admin, "Acme")
    tenant.post("/v1/endpoints", endpoint_body())
    event_id = tenant.post("/v1/events", event_body("order.paid")).json["id"]
    claimed = fanout.fan_out_and_claim(event_id, claim=1).claimed
    assert claimed
    admin.delete(TENANT, tenant_id=tenant_id)

    assert erase.erase_some(budget_s=0.0) is False
    assert admin.get(TENANT, tenant_id=tenant_id).json["deletion"]["step"] == "draining"
    assert Delivery.select().count() == 1
    Delivery.update(lease_until=None).execute()  # the attempt ended (or its worker died)
    while erase.erase_some(budget_s=0.0):
        pass
    assert Delivery.select().count() == 0
