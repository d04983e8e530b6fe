"""The audit log: every mutating route records who changed what, never a secret; reading it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from falcon.testing import Result

import schemas
from api.audit import CHANGED, SECRET_NAME, UNAUDITED, secret_fields
from engine.audit import log
from engine.db.models import AuditEntry, Delivery, utcnow
from engine.deliveries import fanout
from tests.api.support import Api, assert_problem
from tests.api.test_oauth_server import basic, form, new_client, token_for
from tests.factories import endpoint_body, event_body

AUDIT = "/v1/audit-log"
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes
MUTATING = ("post", "put", "patch", "delete")


class World:
    """A tenant with one of everything, and the admin, to call each route with."""

    def __init__(self, admin: Api) -> None:
        self.admin = admin
        made = admin.post("/v1/tenants", {"name": "Acme"}).json
        self.tenant_id = made["id"]
        self.tenant = admin.as_key(made["api_key"])
        self.other_id = admin.post("/v1/tenants", {"name": "Other"}).json["id"]

    def endpoint(self) -> str:
        return str(self.tenant.post("/v1/endpoints", endpoint_body()).json["id"])

    def quarantined(self) -> str:
        self.endpoint()
        event_id = self.tenant.post("/v1/events", event_body()).json["id"]
        fanout.fan_out(event_id)
        Delivery.update(status="quarantined").execute()
        return str(Delivery.get().id)


# One successful call per mutating route. A route the OpenAPI document gains without a
# recipe here fails `test_every_mutating_route_writes_an_audit_entry`.
Recipe = Callable[[World], Result]
RECIPES: dict[str, Recipe] = {
    "POST /v1/tenants": lambda w: w.admin.post("/v1/tenants", {"name": "New"}),
    "PATCH /v1/tenants/{tenant_id}": lambda w: w.admin.patch(
        "/v1/tenants/{tenant_id}", {"name": "Acme 2"}, tenant_id=w.other_id
    ),
    "DELETE /v1/tenants/{tenant_id}": lambda w: w.admin.delete(
        "/v1/tenants/{tenant_id}", tenant_id=w.other_id
    ),
    "POST /v1/tenants/{tenant_id}/suspend": lambda w: w.admin.post(
        "/v1/tenants/{tenant_id}/suspend", tenant_id=w.other_id
    ),
    "POST /v1/tenants/{tenant_id}/resume": lambda w: w.admin.post(
        "/v1/tenants/{tenant_id}/resume", tenant_id=w.other_id
    ),
    "POST /v1/keys": lambda w: w.tenant.post("/v1/keys", {"scopes": ["events:write"]}),
    "DELETE /v1/keys/{key_id}": lambda w: w.tenant.delete(
        "/v1/keys/{key_id}",
        key_id=w.tenant.post("/v1/keys", {"scopes": ["events:write"]}).json["id"],
    ),
    "POST /v1/endpoints": lambda w: w.tenant.post("/v1/endpoints", endpoint_body()),
    "PATCH /v1/endpoints/{endpoint_id}": lambda w: w.tenant.patch(
        "/v1/endpoints/{endpoint_id}", {"description": "x"}, endpoint_id=w.endpoint()
    ),
    "DELETE /v1/endpoints/{endpoint_id}": lambda w: w.tenant.delete(
        "/v1/endpoints/{endpoint_id}", endpoint_id=w.endpoint()
    ),
    "POST /v1/endpoints/{endpoint_id}/secret/rotate": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/secret/rotate", {}, endpoint_id=w.endpoint()
    ),
    "POST /v1/endpoints/{endpoint_id}/verify": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/verify", endpoint_id=w.endpoint()
    ),
    "POST /v1/endpoints/{endpoint_id}/test": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/test", {}, endpoint_id=w.endpoint()
    ),
    "POST /v1/endpoints/{endpoint_id}/recover": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/recover",
        {"since": "2020-01-01T00:00:00Z"},
        endpoint_id=w.endpoint(),
    ),
    "POST /v1/endpoints/{endpoint_id}/enable": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/enable", {}, endpoint_id=w.endpoint()
    ),
    "POST /v1/event-types": lambda w: w.tenant.post("/v1/event-types", {"name": "a.b"}),
    "PATCH /v1/event-types/{name}": lambda w: w.tenant.patch(
        "/v1/event-types/{name}",
        {"description": "x"},
        name=w.tenant.post("/v1/event-types", {"name": "c.d"}).json["name"],
    ),
    "DELETE /v1/event-types/{name}": lambda w: w.tenant.delete(
        "/v1/event-types/{name}",
        name=w.tenant.post("/v1/event-types", {"name": "e.f"}).json["name"],
    ),
    "POST /v1/deliveries/{delivery_id}/retry": lambda w: w.tenant.post(
        "/v1/deliveries/{delivery_id}/retry", delivery_id=w.quarantined()
    ),
    "POST /v1/endpoints/{endpoint_id}/backfill": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/backfill",
        {"since": "2020-01-01T00:00:00Z"},
        endpoint_id=w.endpoint(),
    ),
    "POST /v1/endpoints/{endpoint_id}/pause": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/pause", endpoint_id=w.endpoint()
    ),
    "POST /v1/endpoints/{endpoint_id}/resume": lambda w: w.tenant.post(
        "/v1/endpoints/{endpoint_id}/resume", endpoint_id=w.endpoint()
    ),
    "POST /v1/oauth-clients": lambda w: w.tenant.post(
        "/v1/oauth-clients", {"name": "etl", "scopes": ["events:write"]}
    ),
    "DELETE /v1/oauth-clients/{client_id}": lambda w: w.tenant.delete(
        "/v1/oauth-clients/{client_id}",
        client_id=new_client(w.tenant, ["events:write"])["client_id"],
    ),
    "POST /oauth/revoke": lambda w: revoke_own_token(w.tenant),
    "POST /v1/replays": lambda w: w.tenant.post(
        "/v1/replays", {"since": "2020-01-01T00:00:00Z", "statuses": ["quarantined"]}
    ),
    "POST /v1/replays/{replay_id}/cancel": lambda w: w.tenant.post(
        "/v1/replays/{replay_id}/cancel",
        replay_id=w.quarantined()
        and w.tenant.post(
            "/v1/replays",
            {"since": "2020-01-01T00:00:00Z", "statuses": ["quarantined"]},
        ).json["id"],
    ),
}


def revoke_own_token(tenant: Api) -> Result:
    """A client revokes a token of its own: recorded with the client as the actor."""
    client = new_client(tenant, ["events:write"])
    token = token_for(tenant, client).json["access_token"]
    return form(tenant, "/oauth/revoke", {"token": token}, auth=basic(client))


def mutating_routes() -> list[str]:
    return sorted(
        f"{method.upper()} {path}"
        for path, item in schemas.openapi()["paths"].items()
        for method in item
        if method in MUTATING
    )


def test_the_unaudited_routes_are_only_ingest_and_the_preview() -> None:
    assert UNAUDITED == {
        "POST /v1/events",
        "POST /v1/events/batch",
        "POST /v1/transforms/preview",
        "POST /oauth/token",
        "POST /oauth/introspect",
    }
    assert UNAUDITED <= set(mutating_routes())


@pytest.mark.parametrize("action", [a for a in mutating_routes() if a not in UNAUDITED])
def test_every_mutating_route_writes_an_audit_entry(admin: Api, action: str) -> None:
    recipe = RECIPES.get(action)
    assert recipe is not None, f"a new mutating route: add a recipe for {action!r} here"
    world = World(admin)
    before = {e.id for e in AuditEntry.select(AuditEntry.id)}
    answer = recipe(world)
    assert 200 <= answer.status_code < 300, answer.text

    entries = [
        e for e in AuditEntry.select().where(AuditEntry.action == action) if e.id not in before
    ]
    assert len(entries) == 1
    entry = entries[0]
    assert entry.status_code == answer.status_code
    assert entry.actor_kind in ("api_key", "admin", "oauth_client")
    assert entry.target_id


def test_ingest_and_refused_changes_write_nothing(admin: Api) -> None:
    world = World(admin)
    before = AuditEntry.select().count()
    world.tenant.post("/v1/events", event_body())
    world.tenant.post("/v1/events/batch", {"events": [event_body()]})
    assert_problem(world.tenant.post("/v1/endpoints", {"url": "ftp://x"}), 422)
    assert AuditEntry.select().count() == before


def test_an_entry_names_who_when_the_route_the_target_and_the_fields(admin: Api) -> None:
    world = World(admin)
    endpoint_id = world.endpoint()
    key_id = world.tenant.get("/v1/keys").json["data"][0]["id"]
    started = utcnow()
    world.tenant.patch(
        "/v1/endpoints/{endpoint_id}",
        {"description": "billing", "rate_limit_per_s": 5},
        endpoint_id=endpoint_id,
        headers={"X-Request-Id": "req-42"},
    )

    entry = world.tenant.get(AUDIT, params={"limit": 1}).json["data"][0]
    assert entry["actor"] == {"kind": "api_key", "id": key_id, "subject": None}
    assert entry["action"] == "PATCH /v1/endpoints/{endpoint_id}"
    assert (entry["method"], entry["route"]) == ("PATCH", "/v1/endpoints/{endpoint_id}")
    assert entry["target_id"] == endpoint_id
    assert entry["changes"] == {"description": "billing", "rate_limit_per_s": 5}
    assert entry["request_id"] == "req-42"
    assert entry["tenant_id"] == world.tenant_id
    created_at = dt.datetime.fromisoformat(entry["created_at"].rstrip("Z"))
    assert created_at >= started.replace(microsecond=0)


def test_secrets_are_recorded_only_as_changed(admin: Api) -> None:
    world = World(admin)
    endpoint_id = world.tenant.post(
        "/v1/endpoints",
        endpoint_body(secret=SECRET, headers={"Authorization": "Bearer sk-live-1", "X-Env": "p"}),
    ).json["id"]
    world.tenant.post(
        "/v1/endpoints/{endpoint_id}/secret/rotate", {"secret": SECRET}, endpoint_id=endpoint_id
    )
    key = world.tenant.post("/v1/keys", {"scopes": ["events:write"]}).json["api_key"]
    admin.patch(
        "/v1/tenants/{tenant_id}",
        {
            "alert_channels": {
                "webhook_url": "https://alerts.example.com/in",
                "webhook_secret": SECRET,
                "pagerduty_routing_key": "pd-routing-key-123",
                "slack_webhook_url": "https://hooks.slack.com/services/T/B/xyz",
            }
        },
        tenant_id=world.tenant_id,
    )

    stored = json.dumps([e.changes for e in AuditEntry.select()])
    for secret in (SECRET, "sk-live-1", key, "pd-routing-key-123", "hooks.slack.com"):
        assert secret not in stored
    created = AuditEntry.get(AuditEntry.action == "POST /v1/endpoints").changes
    assert created["secret"] == CHANGED
    assert created["headers"] == {"Authorization": CHANGED, "X-Env": CHANGED}
    channels = AuditEntry.get(AuditEntry.action == "PATCH /v1/tenants/{tenant_id}").changes
    assert channels["alert_channels"]["webhook_url"] == "https://alerts.example.com/in"
    assert channels["alert_channels"]["webhook_secret"] == CHANGED


def request_schema_properties(node: Any) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict):
                found.append((name, sub))
        for value in node.values():
            found += request_schema_properties(value)
    elif isinstance(node, list):
        for value in node:
            found += request_schema_properties(value)
    return found


def test_every_secret_looking_field_of_a_schema_is_marked_secret() -> None:
    unmarked = sorted(
        f"{name}.{prop}"
        for name in schemas.names()
        for prop, sub in request_schema_properties(schemas.load(name))
        if SECRET_NAME.search(prop)
        and "x-hookline-secret" not in sub
        and prop not in ("api_key", "previous_secret", "previous_secret_expires_at")
        and prop not in ("token_type", "token_url")
        and not name.endswith(("_created", "endpoint_secret"))
    )
    assert unmarked == []
    whole, values = secret_fields()
    assert {"secret", "webhook_secret", "slack_webhook_url", "pagerduty_routing_key"} <= whole
    assert values == {"headers"}


def test_a_tenant_reads_only_its_own_entries_and_the_admin_reads_all(admin: Api) -> None:
    world = World(admin)
    world.endpoint()
    other = admin.as_key(admin.post("/v1/tenants", {"name": "Globex"}).json["api_key"])
    other.post("/v1/endpoints", endpoint_body())

    own = world.tenant.get(AUDIT).json["data"]
    everyone = admin.get(AUDIT, params={"limit": 200}).json["data"]
    one = admin.get(AUDIT, params={"tenant_id": world.tenant_id}).json["data"]

    assert {e["tenant_id"] for e in own} == {world.tenant_id}
    assert len({e["tenant_id"] for e in everyone}) >= 3
    assert [e["id"] for e in one] == [e["id"] for e in own]
    assert any(e["actor"]["kind"] == "admin" for e in one), "the admin's change to it"


def test_entries_come_newest_first_paged_and_filtered(admin: Api) -> None:
    world = World(admin)
    for _ in range(3):
        world.endpoint()
    world.tenant.post("/v1/event-types", {"name": "a.b"})
    first = world.tenant.get(AUDIT, params={"limit": 2}).json
    rest = world.tenant.get(AUDIT, params={"limit": 2, "cursor": first["next_cursor"]}).json
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True)
    assert first["data"][0]["action"] == "POST /v1/event-types"

    made = world.tenant.get(AUDIT, params={"action": "POST /v1/endpoints"}).json["data"]
    assert len(made) == 3
    future = (utcnow() + dt.timedelta(hours=1)).isoformat() + "Z"
    assert world.tenant.get(AUDIT, params={"since": future}).json["data"] == []
    assert len(world.tenant.get(AUDIT, params={"until": future}).json["data"]) == 5


@pytest.mark.parametrize("param", ["since", "until", "limit", "cursor"])
def test_a_bad_filter_is_400_naming_it(tenant: Api, param: str) -> None:
    assert_problem(tenant.get(AUDIT, params={param: "not-valid"}), 400, param)


def test_reading_the_log_needs_the_audit_scope(tenant: Api) -> None:
    key = tenant.post("/v1/keys", {"scopes": ["endpoints:read"]}).json["api_key"]
    problem = assert_problem(tenant.as_key(key).get(AUDIT), 403)
    assert "audit:read" in problem["detail"]


def test_purge_removes_entries_older_than_the_cutoff_a_tenant_may_have_its_own(admin: Api) -> None:
    now = utcnow()
    old, recent = now - dt.timedelta(days=40), now - dt.timedelta(days=5)
    for tenant_id in ("ten_a", "ten_b", None):
        for when in (old, recent):
            log.record(log.Change(tenant_id, "admin", "admin", "POST /x", None, 200, None), when)

    removed = log.purge(
        now - dt.timedelta(days=30), tenant_cutoffs={"ten_b": now - dt.timedelta(days=1)}, batch=1
    )

    left = sorted((e.tenant_id or "", e.created_at) for e in AuditEntry.select())
    assert removed == 4
    assert left == [("", recent), ("ten_a", recent)]
