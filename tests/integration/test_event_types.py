"""The event-type catalog on PostgreSQL and RabbitMQ: schemas refuse bad payloads at ingest,
and a change made through one API process holds on another within the cache's bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from engine.db.migrations import m0009_event_types as step
from engine.db.models import ApiKey, Tenant
from engine.events import catalog
from engine.events.catalog_cache import CatalogCache
from engine.ids import new_id
from tests.factories import ADMIN_TOKEN, Clock
from tests.integration.conftest import Api, Processes, free_port, stack_env
from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

BOUND_S = 2.0  # HOOKLINE_EVENT_TYPES_CACHE_S, the default
SLACK_S = 1.5  # one read, and the polling below
INVOICE = {
    "type": "object",
    "required": ["invoice", "amount", "currency"],
    "properties": {
        "invoice": {"type": "string", "pattern": "^INV-[0-9]+$"},
        "amount": {"type": "integer", "minimum": 1},
        "currency": {"enum": ["usd", "eur"]},
        "lines": {
            "type": "array",
            "items": {"type": "object", "required": ["sku", "quantity"]},
        },
    },
    "additionalProperties": False,
}
BAD = {
    "invoice": "7",
    "amount": 0,
    "lines": [{"sku": "a", "quantity": 1}, {"sku": "b"}],
    "note": "extra",
}


def test_a_schema_rejects_a_bad_payload_listing_every_violation(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant("schemas")
    status, endpoint = api.call("POST", "/v1/endpoints", {"url": receiver.url("/inv")}, key=key)
    assert status == 201, endpoint
    status, declared = api.call(
        "POST", "/v1/event-types", {"name": "invoice.paid", "schema": INVOICE}, key=key
    )
    assert (status, declared["version"]) == (201, 1), declared

    status, problem = api.call(
        "POST", "/v1/events", {"event_type": "invoice.paid", "payload": BAD}, key=key
    )

    assert status == 422, problem
    assert api.last_headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "urn:hookline:problem:payload-schema"
    assert sorted((e["pointer"], e["message"]) for e in problem["errors"]) == [
        ("", '"currency" is a required property'),
        ("", "Additional properties are not allowed ('note' was unexpected)"),
        ("/amount", "0 is less than the minimum of 1"),
        ("/invoice", '"7" does not match "^INV-[0-9]+$"'),
        ("/lines/1", '"quantity" is a required property'),
    ]
    good = {"invoice": "INV-7", "amount": 700, "currency": "eur"}
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "invoice.paid", "payload": good}, key=key
    )
    assert (status, event["schema_version"]) == (202, 1), event
    [delivered] = receiver.wait_for("/inv", 1, timeout_s=30)
    assert Webhook(endpoint["secret"]).verify(delivered.body, delivered.headers)["data"] == good
    assert delivered.headers["webhook-id"] == event["id"]


def test_a_batch_refuses_only_the_items_their_schema_refuses(stack: tuple[Api, Any]) -> None:
    api, _ = stack
    key = api.tenant("batch-schemas")
    api.call("POST", "/v1/event-types", {"name": "invoice.paid", "schema": INVOICE}, key=key)
    good = {"invoice": "INV-1", "amount": 1, "currency": "usd"}
    items = [{"event_type": "invoice.paid", "payload": p} for p in (good, BAD, good)]

    status, body = api.call("POST", "/v1/events/batch", {"events": items}, key=key)

    assert status == 207, body
    assert [r["status"] for r in body["results"]] == [202, 422, 202]
    assert len(body["results"][1]["error"]["errors"]) == 5
    _, event = api.call("GET", f"/v1/events/{body['results'][0]['id']}", key=key)
    assert event["schema_version"] == 1


@pytest.fixture(scope="module")
def two_apis(pg_migrated: str, amqp_url: str, tmp_path_factory: Any) -> Iterator[list[Api]]:
    """Two `hookline api` processes, as on two hosts, on one database."""
    logs = tmp_path_factory.mktemp("catalog-logs")
    apis, processes = [], []
    for index in range(2):
        port = free_port()
        env = stack_env(
            pg_migrated, amqp_url, HOOKLINE_BIND=f"127.0.0.1:{port}", HOOKLINE_API_THREADS="4"
        )
        running = Processes(env, logs)
        running.start("api", name=f"api-{index}")
        processes.append(running)
        apis.append(Api(f"http://127.0.0.1:{port}"))
    try:
        for api in apis:
            api.wait_healthy()
        yield apis
    finally:
        for running in processes:
            running.stop_all()


def seconds_until(check: Any, timeout_s: float = 10.0) -> float:
    """How long until `check()` holds, polled every 50 ms."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "never held"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_schema_saved_on_one_process_holds_on_another_within_the_bound(
    two_apis: list[Api],
) -> None:
    first, second = two_apis
    key = first.tenant("two-hosts")
    bad = {"event_type": "invoice.paid", "payload": BAD}
    # The second process now holds the tenant's empty catalog, a negative answer.
    assert second.call("POST", "/v1/events", bad, key=key)[0] == 202

    status, _ = first.call(
        "POST", "/v1/event-types", {"name": "invoice.paid", "schema": INVOICE}, key=key
    )
    assert status == 201
    assert first.call("POST", "/v1/events", bad, key=key)[0] == 422  # its own change: at once

    waited = seconds_until(lambda: second.call("POST", "/v1/events", bad, key=key)[0] == 422)
    assert waited <= BOUND_S + SLACK_S

    first.call("PATCH", "/v1/event-types/invoice.paid", {"schema": {}}, key=key)
    waited = seconds_until(lambda: second.call("POST", "/v1/events", bad, key=key)[0] == 202)
    assert waited <= BOUND_S + SLACK_S
    _, event = second.call("POST", "/v1/events", bad, key=key)
    assert event["schema_version"] == 2


def test_strict_mode_set_on_one_process_holds_on_another_within_the_bound(
    two_apis: list[Api],
) -> None:
    first, second = two_apis
    status, tenant = first.call("POST", "/v1/tenants", {"name": "strict"}, key=ADMIN_TOKEN)
    key = tenant["api_key"]
    unknown = {"event_type": "never.declared", "payload": {}}
    assert second.call("POST", "/v1/events", unknown, key=key)[0] == 202

    status, _ = first.call(
        "PATCH", f"/v1/tenants/{tenant['id']}", {"strict_event_types": True}, key=ADMIN_TOKEN
    )
    assert status == 200

    waited = seconds_until(lambda: second.call("POST", "/v1/events", unknown, key=key)[0] == 422)
    assert waited <= BOUND_S + SLACK_S
    _, listed = second.call("GET", "/v1/event-types", key=key)
    assert listed["strict_event_types"] is True


def test_two_caches_on_postgresql_see_each_others_changes_after_the_bound(pg: Any) -> None:
    tenant_id = new_id("ten")
    Tenant.create(id=tenant_id, name="caches")
    clock = Clock()
    here, there = CatalogCache(2.0, clock=clock), CatalogCache(2.0, clock=clock)
    assert there.snapshot(tenant_id).types == {}

    catalog.create_event_type(tenant_id, {"name": "invoice.paid", "schema": INVOICE})
    here.forget(tenant_id)

    assert here.snapshot(tenant_id).types["invoice.paid"].version == 1
    assert there.snapshot(tenant_id).types == {}  # trusted until the bound
    clock.now += 2.0
    assert there.snapshot(tenant_id).types["invoice.paid"].version == 1
    catalog.update_event_type(tenant_id, "invoice.paid", {"schema": {"type": "object"}})
    clock.now += 2.0
    assert there.snapshot(tenant_id).judge("invoice.paid", {}) == 2


def test_the_migration_gives_a_key_of_every_scope_the_new_ones_on_postgresql(pg: Any) -> None:
    every, narrow, tenant_id = new_id("key"), new_id("key"), new_id("ten")
    Tenant.create(id=tenant_id, name="keys")
    for ident, scopes in ((every, list(step._EVERY_SCOPE_BEFORE)), (narrow, ["events:write"])):
        ApiKey.create(id=ident, tenant_id=tenant_id, key_hash=ident, prefix="hk_", scopes=scopes)

    for statement in step.POSTGRES:
        pg.execute_sql(statement)
        pg.execute_sql(statement)  # twice: the second changes nothing

    assert ApiKey.get_by_id(every).scopes[-2:] == ["event_types:read", "event_types:write"]
    assert len(ApiKey.get_by_id(every).scopes) == 8
    assert ApiKey.get_by_id(narrow).scopes == ["events:write"]


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_the_embedded_mode_validates_payloads_and_lists_the_catalog(tmp_path: Path) -> None:
    with hookline_up(tmp_path) as (api, env, cwd):
        tenant = cli(env, cwd, "tenants", "create", "acme")
        key = tenant["api_key"]
        status, _ = api.call(
            "POST", "/v1/event-types", {"name": "invoice.paid", "schema": INVOICE}, key=key
        )
        assert status == 201

        status, problem = api.call(
            "POST", "/v1/events", {"event_type": "invoice.paid", "payload": BAD}, key=key
        )
        good = {"invoice": "INV-1", "amount": 1, "currency": "usd"}
        accepted, event = api.call(
            "POST", "/v1/events", {"event_type": "invoice.paid", "payload": good}, key=key
        )
        listed = cli(env, cwd, "tenants", "event-types", tenant["id"])

    assert (status, len(problem["errors"])) == (422, 5)
    assert (accepted, event["schema_version"]) == (202, 1)
    assert [t["name"] for t in listed["event_types"]] == ["invoice.paid"]
    assert listed["strict_event_types"] is False
