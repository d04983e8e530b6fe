"""Tenant lifecycle on real processes: a suspended tenant loses nothing, a deleted one leaves
no row behind in any table of the database."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.db.models import Delivery
from engine.ids import PREFIXES, is_id
from tests.erasure import leftovers
from tests.factories import ADMIN_TOKEN
from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


def new_tenant(api: Api, name: str) -> tuple[str, str]:
    status, body = api.call("POST", "/v1/tenants", {"name": name}, key=ADMIN_TOKEN)
    assert status == 201, body
    return body["id"], body["api_key"]


def publish(api: Api, key: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, body = api.call(
            "POST", "/v1/events", {"event_type": "order.paid", "payload": {"n": i}}, key=key
        )
        assert status == 202, body
        ids.append(body["id"])
    return ids


def statuses(endpoint_id: str) -> set[str]:
    return {d.status for d in Delivery.select().where(Delivery.endpoint_id == endpoint_id)}


def test_a_suspended_tenant_gets_403_and_its_deliveries_wait_then_arrive_once_each(
    stack: tuple[Api, Any], receiver: Receiver, pg: Any
) -> None:
    api, _ = stack
    tenant_id, key = new_tenant(api, "suspended")
    receiver.script("/held", *([500] * 4))
    endpoint = create_endpoint(api, key, receiver.url("/held"), retry_schedule=[2])
    events = publish(api, key, 4)
    receiver.wait_for("/held", 4)  # each failed once: retries due in 2 s

    status, body = api.call("POST", f"/v1/tenants/{tenant_id}/suspend", key=ADMIN_TOKEN)
    assert (status, body["status"]) == (200, "suspended")
    status, problem = api.call("GET", "/v1/endpoints", key=key)
    assert (status, problem["type"]) == (403, "urn:hookline:problem:tenant-suspended")
    time.sleep(3.5)  # the retries came due while suspended
    assert len(receiver.received("/held")) == 4, "nothing is sent while suspended"
    assert statuses(endpoint["id"]) == {"throttled"}, "waiting in the database"

    status, body = api.call("POST", f"/v1/tenants/{tenant_id}/resume", key=ADMIN_TOKEN)
    assert (status, body["status"]) == (200, "active")
    requests = receiver.wait_for("/held", 8)
    time.sleep(0.5)  # a duplicate would show by now
    requests = receiver.received("/held")
    assert len(requests) == 8
    assert sorted(r.headers["webhook-id"] for r in requests[4:]) == sorted(events)
    assert statuses(endpoint["id"]) == {"succeeded"}


def _an_id(value: Any) -> bool:
    return isinstance(value, str) and any(is_id(value, prefix) for prefix in PREFIXES.values())


def tenant_ids(pg: Any, tenant_id: str) -> set[str]:
    """Every id of the tenant's rows, read from every table with a `tenant_id` column."""
    tables = pg.execute_sql(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND column_name = 'tenant_id'"
    ).fetchall()
    found = {tenant_id}
    for (table,) in tables:
        rows = pg.execute_sql(f'SELECT * FROM "{table}" WHERE tenant_id = %s', (tenant_id,))
        # Every id a row holds: a table keyed otherwise (event_key) names its event.
        found |= {value for row in rows.fetchall() for value in row if _an_id(value)}
    return found


def test_a_deleted_tenant_leaves_no_row_behind_and_another_keeps_its_own(
    stack: tuple[Api, Any], receiver: Receiver, pg: Any
) -> None:
    api, _ = stack
    tenant_id, key = new_tenant(api, "doomed")
    other_id, other_key = new_tenant(api, "kept")
    for k, path in ((key, "/doomed"), (other_key, "/kept")):
        create_endpoint(api, k, receiver.url(path), headers={"X-Token": "t"})
        api.call("POST", "/v1/event-types", {"name": "order.paid"}, key=k)
        api.call("POST", "/v1/keys", {"scopes": ["events:write"]}, key=k)
        publish(api, k, 3)
    receiver.wait_for("/doomed", 3)
    receiver.wait_for("/kept", 3)
    time.sleep(0.5)  # the attempts are recorded
    ids, kept = tenant_ids(pg, tenant_id), tenant_ids(pg, other_id)
    assert len(ids) > 12

    status, body = api.call("DELETE", f"/v1/tenants/{tenant_id}", key=ADMIN_TOKEN)
    assert (status, body["status"]) == (202, "deleting")
    status, problem = api.call("GET", "/v1/endpoints", key=key)
    assert problem["type"] == "urn:hookline:problem:tenant-deleting"
    deadline = time.monotonic() + 15
    while api.call("GET", f"/v1/tenants/{tenant_id}", key=ADMIN_TOKEN)[0] != 404:
        assert time.monotonic() < deadline, "the erasure never finished"
        time.sleep(0.2)

    assert leftovers(pg, ids) == {}, "no column of any table names one of its ids"
    time.sleep(1.0)  # HOOKLINE_CREDENTIAL_CACHE_TTL_S: until then its cached key says 403
    assert api.call("GET", "/v1/endpoints", key=key)[0] == 401
    assert tenant_ids(pg, other_id) >= kept, "the other tenant's rows are all there"
    status, audit = api.call("GET", f"/v1/audit-log?tenant_id={tenant_id}", key=ADMIN_TOKEN)
    assert audit["data"] == []
    status, audit = api.call(
        "GET", "/v1/audit-log?action=DELETE%20/v1/tenants/%7Btenant_id%7D", key=ADMIN_TOKEN
    )
    assert tenant_id in {e["target_id"] for e in audit["data"]}, "the admin's record stays"
