"""`/v1/event-types`: the catalog, its schemas checked when saved and applied at ingest."""

from __future__ import annotations

from typing import Any

import pytest

from engine.db.models import Event
from tests.api.conftest import new_tenant
from tests.api.support import Api, assert_problem
from tests.factories import event_body

TYPES = "/v1/event-types"
TYPE = "/v1/event-types/{name}"
EVENTS = "/v1/events"
BATCH = "/v1/events/batch"
TENANT = "/v1/tenants/{tenant_id}"

INVOICE = {
    "type": "object",
    "required": ["invoice", "amount"],
    "properties": {
        "invoice": {"type": "string", "minLength": 3},
        "amount": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
    },
    "$defs": {"line": {"type": "object", "required": ["sku"]}},
}


def declare(tenant: Api, name: str = "invoice.paid", **fields: Any) -> dict[str, Any]:
    result = tenant.post(TYPES, {"name": name, **fields})
    assert result.status_code == 201, result.text
    return result.json  # type: ignore[no-any-return]


def test_declaring_a_type_answers_201_at_version_1(tenant: Api) -> None:
    created = declare(tenant, description="An invoice was paid", schema=INVOICE)

    assert created["id"].startswith("etype_")
    assert created["name"] == "invoice.paid"
    assert created["schema"] == INVOICE
    assert (created["version"], created["archived"]) == (1, False)
    assert tenant.get(TYPE, name="invoice.paid").json == created


def test_a_duplicate_name_is_409(tenant: Api) -> None:
    declare(tenant)

    result = tenant.post(TYPES, {"name": "invoice.paid"})

    assert assert_problem(result, 409)["type"] == "urn:hookline:problem:conflict"


def test_an_unknown_type_is_a_404_problem(tenant: Api) -> None:
    for method in ("GET", "DELETE"):
        assert_problem(tenant.call(method, TYPE, name="nope"), 404)
    assert_problem(tenant.patch(TYPE, {"description": "x"}, name="nope"), 404)


def test_another_tenants_types_are_not_found(tenant: Api, stranger: Api) -> None:
    declare(tenant)

    assert_problem(stranger.get(TYPE, name="invoice.paid"), 404)
    assert stranger.get(TYPES).json["data"] == []


def test_a_name_breaking_the_event_type_rule_is_422(tenant: Api) -> None:
    assert_problem(tenant.post(TYPES, {"name": "has space"}), 422, "name")


def test_an_invalid_schema_is_422_naming_the_problem(tenant: Api) -> None:
    result = tenant.post(TYPES, {"name": "a.b", "schema": {"type": "nope"}})

    problem = assert_problem(result, 422, "schema.type")
    assert "nope" in problem["detail"]


@pytest.mark.parametrize(
    "ref", ["https://example.com/s.json", "other.json#/x", "//host/s", "urn:x:y"]
)
def test_a_remote_ref_is_refused(tenant: Api, ref: str) -> None:
    schema = {"properties": {"a": {"$ref": ref}}}

    result = tenant.post(TYPES, {"name": "a.b", "schema": schema})

    problem = assert_problem(result, 422, "schema.properties.a.$ref")
    assert "local" in problem["detail"]


def test_an_example_the_schema_refuses_is_422_naming_it(tenant: Api) -> None:
    good = {"invoice": "INV-1", "amount": 5}
    result = tenant.post(
        TYPES, {"name": "a.b", "schema": INVOICE, "examples": [good, {"invoice": "INV-2"}]}
    )

    assert_problem(result, 422, "examples.1")


def test_every_change_of_schema_raises_the_version_and_nothing_else_does(tenant: Api) -> None:
    declare(tenant, schema=INVOICE)

    described = tenant.patch(TYPE, {"description": "paid"}, name="invoice.paid").json
    reordered = tenant.patch(TYPE, {"schema": dict(reversed(INVOICE.items()))}, name="invoice.paid")
    changed = tenant.patch(TYPE, {"schema": {"type": "object"}}, name="invoice.paid").json
    dropped = tenant.patch(TYPE, {"schema": None}, name="invoice.paid").json

    assert described["version"] == 1
    assert reordered.json["version"] == 1
    assert changed["version"] == 2
    assert (dropped["version"], dropped["schema"]) == (3, None)


def test_delete_archives_and_the_list_filters_on_archived(tenant: Api) -> None:
    declare(tenant, "a.one")
    declare(tenant, "a.two")

    archived = tenant.delete(TYPE, name="a.one")

    assert (archived.status_code, archived.json["archived"]) == (200, True)
    assert tenant.get(TYPE, name="a.one").json["archived"] is True
    names = lambda params: [t["name"] for t in tenant.get(TYPES, params=params).json["data"]]  # noqa: E731
    assert names({}) == ["a.two", "a.one"]
    assert names({"archived": "true"}) == ["a.one"]
    assert names({"archived": "false"}) == ["a.two"]
    assert_problem(tenant.get(TYPES, params={"archived": "maybe"}), 400, "archived")
    restored = tenant.patch(TYPE, {"archived": False}, name="a.one").json
    assert restored["archived"] is False


def test_the_list_is_cursor_paged(tenant: Api) -> None:
    for index in range(5):
        declare(tenant, f"t.{index}")

    first = tenant.get(TYPES, params={"limit": 3}).json
    second = tenant.get(TYPES, params={"limit": 3, "cursor": first["next_cursor"]}).json

    assert [t["name"] for t in first["data"] + second["data"]] == [
        f"t.{i}" for i in range(4, -1, -1)
    ]
    assert second["next_cursor"] is None


def test_a_payload_its_schema_refuses_is_422_listing_every_violation(tenant: Api) -> None:
    declare(tenant, schema=INVOICE)
    payload = {"invoice": "x", "amount": -1, "lines": [{"sku": 1}, {}, {"no": "sku"}]}

    result = tenant.post(EVENTS, event_body("invoice.paid", payload=payload))

    problem = assert_problem(result, 422, "payload")
    assert problem["type"] == "urn:hookline:problem:payload-schema"
    assert sorted(e["pointer"] for e in problem["errors"]) == [
        "/amount",
        "/invoice",
        "/lines/1",
        "/lines/2",
    ]
    assert all(e["message"] for e in problem["errors"])
    assert Event.select().count() == 0


def test_at_most_50_violations_are_listed(tenant: Api) -> None:
    declare(tenant, "many", schema={"additionalProperties": {"type": "string"}})

    result = tenant.post(EVENTS, event_body("many", payload={f"k{i}": i for i in range(80)}))

    assert len(assert_problem(result, 422, "payload")["errors"]) == 50


def test_an_event_records_the_schema_version_it_passed(tenant: Api) -> None:
    declare(tenant, schema=INVOICE)
    tenant.patch(TYPE, {"schema": {**INVOICE, "required": ["invoice"]}}, name="invoice.paid")

    passed = tenant.post(EVENTS, event_body("invoice.paid", payload={"invoice": "INV-9"})).json
    keyed = tenant.post(
        EVENTS, event_body("invoice.paid", payload={"invoice": "INV-9"}, idempotency_key="k1")
    ).json
    other = tenant.post(EVENTS, event_body("order.paid")).json

    assert (passed["schema_version"], keyed["schema_version"]) == (2, 2)
    assert other["schema_version"] is None
    assert tenant.get("/v1/events/{event_id}", event_id=passed["id"]).json["schema_version"] == 2


def test_an_archived_types_schema_no_longer_applies(tenant: Api) -> None:
    declare(tenant, schema=INVOICE)
    tenant.delete(TYPE, name="invoice.paid")

    result = tenant.post(EVENTS, event_body("invoice.paid", payload={}))

    assert (result.status_code, result.json["schema_version"]) == (202, None)


def test_a_batch_judges_each_item_against_its_schema(tenant: Api) -> None:
    declare(tenant, schema=INVOICE)
    items = [
        event_body("invoice.paid", payload={"invoice": "INV-1", "amount": 1}),
        event_body("invoice.paid", payload={"invoice": 3}),
        event_body("order.paid"),
    ]

    results = tenant.post(BATCH, {"events": items}).json["results"]

    assert [r["status"] for r in results] == [202, 422, 202]
    error = results[1]["error"]
    assert error["field"] == "events.1.payload"
    assert sorted(e["pointer"] for e in error["errors"]) == ["", "/invoice"]
    assert Event.get_by_id(results[0]["id"]).schema_version == 1


def test_strict_mode_refuses_unregistered_and_archived_types(admin: Api) -> None:
    created = admin.post("/v1/tenants", {"name": "Strict"}).json
    tenant = admin.as_key(created["api_key"])
    declare(tenant, "kept")
    declare(tenant, "gone")
    tenant.delete(TYPE, name="gone")

    switched = admin.patch(TENANT, {"strict_event_types": True}, tenant_id=created["id"])

    assert switched.json["strict_event_types"] is True
    assert tenant.get(TYPES).json["strict_event_types"] is True
    assert tenant.post(EVENTS, event_body("kept")).status_code == 202
    for name in ("unknown", "gone"):
        assert_problem(tenant.post(EVENTS, event_body(name)), 422, "event_type")
    batch = tenant.post(BATCH, {"events": [event_body("kept"), event_body("unknown")]}).json
    assert [r["status"] for r in batch["results"]] == [202, 422]
    admin.patch(TENANT, {"strict_event_types": False}, tenant_id=created["id"])
    assert tenant.post(EVENTS, event_body("unknown")).status_code == 202


def test_a_tenant_is_not_strict_by_default(tenant: Api) -> None:
    assert tenant.get(TYPES).json["strict_event_types"] is False
    assert tenant.post(EVENTS, event_body("anything.goes")).status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", TYPES, "event_types:read"),
        ("POST", TYPES, "event_types:write"),
        ("PATCH", TYPE, "event_types:write"),
        ("DELETE", TYPE, "event_types:write"),
    ],
)
def test_each_operation_needs_its_scope(admin: Api, method: str, path: str, scope: str) -> None:
    tenant = new_tenant(admin, "Scoped")
    others = [s for s in ("event_types:read", "event_types:write") if s != scope]
    lacking = tenant.as_key(tenant.post("/v1/keys", {"scopes": others}).json["api_key"])

    result = lacking.call(method, path, doc={"name": "a.b"}, name="a.b")

    assert scope in assert_problem(result, 403)["detail"]


def test_a_repeat_of_an_accepted_event_answers_it_though_its_schema_changed(tenant: Api) -> None:
    declare(tenant)
    first = tenant.post(
        EVENTS, event_body("invoice.paid", payload={"invoice": 1}, idempotency_key="k-1")
    ).json
    tenant.patch(TYPE, {"schema": INVOICE}, name="invoice.paid")
    repeat = event_body("invoice.paid", payload={"invoice": 1}, idempotency_key="k-1")
    fresh = event_body("invoice.paid", payload={"invoice": 1}, idempotency_key="k-2")

    single = tenant.post(EVENTS, repeat)
    batch = tenant.post(BATCH, {"events": [repeat, fresh]}).json["results"]

    assert (single.status_code, single.json["id"]) == (200, first["id"])
    assert batch[0] == {"status": 200, "id": first["id"]}
    assert batch[1]["status"] == 422
    assert_problem(tenant.post(EVENTS, fresh), 422, "payload")
