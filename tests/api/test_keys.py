"""`/v1/keys`: API keys issued (shown once), listed without the key, revoked at once."""

from __future__ import annotations

from typing import Any

import pytest
from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import ApiKey
from engine.settings import Settings
from engine.tenancy.tenants import ALL_SCOPES
from tests.api.support import Api, Recorder, assert_problem

KEYS = "/v1/keys"
KEY = "/v1/keys/{key_id}"


def issue(api: Api, *scopes: str, name: str | None = "ci") -> dict[str, Any]:
    """Issue a key as `api`; answer the 201 body."""
    result = api.post(KEYS, {"name": name, "scopes": list(scopes)})
    assert result.status_code == 201, result.text
    return result.json  # type: ignore[no-any-return]


def test_a_new_key_is_shown_once_and_listed_without_it(tenant: Api) -> None:
    created = issue(tenant, "endpoints:read", "events:write", name="deploy bot")

    listed = tenant.get(KEYS)

    assert created["api_key"].startswith("hk_")
    assert created["api_key"].startswith(created["prefix"])
    assert created["name"] == "deploy bot"
    assert created["scopes"] == ["events:write", "endpoints:read"]
    [entry] = [key for key in listed.json["data"] if key["id"] == created["id"]]
    assert "api_key" not in entry
    assert created["api_key"] not in listed.text
    assert entry == {k: v for k, v in created.items() if k != "api_key"}


def test_the_tenants_first_key_is_listed_with_every_scope(tenant: Api) -> None:
    [first] = tenant.get(KEYS).json["data"]

    assert first["scopes"] == list(ALL_SCOPES)
    assert tenant.key is not None and tenant.key.startswith(first["prefix"])


def test_a_key_is_stored_only_as_a_digest(tenant: Api) -> None:
    created = issue(tenant, "endpoints:read")

    row = ApiKey.get_by_id(created["id"])

    assert created["api_key"] not in {row.key_hash, row.prefix, row.name}
    assert len(row.key_hash) == 64


def test_a_new_key_authenticates_with_exactly_its_scopes(tenant: Api) -> None:
    reader = tenant.as_key(issue(tenant, "endpoints:read")["api_key"])

    assert reader.get("/v1/endpoints").status_code == 200
    refused = reader.post("/v1/endpoints", {"url": "https://example.com/hook"})
    problem = assert_problem(refused, 403)
    assert problem["type"] == "urn:hookline:problem:forbidden"
    assert "endpoints:write" in problem["detail"]


def test_a_revoked_key_is_refused_on_the_next_request(tenant: Api) -> None:
    created = issue(tenant, "endpoints:read")
    other = tenant.as_key(created["api_key"])
    assert other.get("/v1/endpoints").status_code == 200

    revoked = tenant.delete(KEY, key_id=created["id"])

    assert revoked.status_code == 204
    assert_problem(other.get("/v1/endpoints"), 401)
    assert created["id"] not in {key["id"] for key in tenant.get(KEYS).json["data"]}


def test_a_key_revoked_through_one_process_is_refused_by_another_at_once(
    sqlite_settings: Settings, sqlite_db: Any, tenant: Api
) -> None:
    # Two apps on one database stand for two API processes: neither may cache a key.
    other_process = Api(
        TestClient(create_app(sqlite_settings, database=sqlite_db, enqueue=Recorder()))
    )
    created = issue(tenant, "endpoints:read")
    there = other_process.as_key(created["api_key"])
    assert there.get("/v1/endpoints").status_code == 200

    tenant.delete(KEY, key_id=created["id"])

    assert_problem(there.get("/v1/endpoints"), 401)


def test_a_key_can_revoke_itself(tenant: Api) -> None:
    created = issue(tenant, "keys:manage")
    itself = tenant.as_key(created["api_key"])

    assert itself.delete(KEY, key_id=created["id"]).status_code == 204
    assert_problem(itself.get(KEYS), 401)


def test_revoking_a_revoked_or_unknown_key_is_404(tenant: Api) -> None:
    created = issue(tenant, "endpoints:read")
    tenant.delete(KEY, key_id=created["id"])

    assert_problem(tenant.delete(KEY, key_id=created["id"]), 404)
    assert_problem(tenant.delete(KEY, key_id="key_01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)


def test_a_key_cannot_grant_a_scope_it_lacks(tenant: Api) -> None:
    manager = tenant.as_key(issue(tenant, "keys:manage", "endpoints:read")["api_key"])

    refused = manager.post(KEYS, {"scopes": ["endpoints:read", "endpoints:write"]})
    narrower = manager.post(KEYS, {"scopes": ["endpoints:read"]})

    problem = assert_problem(refused, 403)
    assert problem["type"] == "urn:hookline:problem:forbidden"
    assert "endpoints:write" in problem["detail"]
    assert narrower.status_code == 201
    assert narrower.json["name"] is None


def test_managing_keys_needs_the_keys_manage_scope(tenant: Api) -> None:
    writer = tenant.as_key(issue(tenant, "endpoints:read", "endpoints:write")["api_key"])

    for result in (
        writer.get(KEYS),
        writer.post(KEYS, {"scopes": ["endpoints:read"]}),
        writer.delete(KEY, key_id="key_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    ):
        assert "keys:manage" in assert_problem(result, 403)["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["events:read"]}, "scopes.0"),
        ({"scopes": ["keys:manage", "keys:manage"]}, "scopes"),
        ({"scopes": ["keys:manage"], "name": ""}, "name"),
        ({"scopes": ["keys:manage"], "name": "x" * 129}, "name"),
        ({"scopes": ["keys:manage"], "expires_at": "tomorrow"}, "expires_at"),
        ({"scopes": "keys:manage"}, "scopes"),
    ],
    ids=["none", "empty", "unknown", "repeated", "blank-name", "long-name", "extra", "string"],
)
def test_an_invalid_key_body_is_422_naming_the_field(
    tenant: Api, body: dict[str, Any], field: str
) -> None:
    assert_problem(tenant.post(KEYS, body), 422, field)


def test_the_key_list_pages_newest_first(tenant: Api) -> None:
    ids = [issue(tenant, "endpoints:read")["id"] for _ in range(4)]

    pages = tenant.walk(KEYS, limit=2)

    listed = [key["id"] for page in pages for key in page]
    assert listed[:4] == ids[::-1]
    assert len(listed) == 5  # and the tenant's first key, oldest


def test_a_key_may_revoke_only_keys_whose_scopes_it_holds(tenant: Api) -> None:
    manager = tenant.as_key(issue(tenant, "keys:manage", "endpoints:read")["api_key"])
    wider = issue(tenant, "keys:manage", "endpoints:read", "endpoints:write")
    narrower = issue(tenant, "endpoints:read")

    refused = manager.delete(KEY, key_id=wider["id"])

    problem = assert_problem(refused, 403)
    assert problem["type"] == "urn:hookline:problem:forbidden"
    assert "endpoints:write" in problem["detail"]
    assert tenant.as_key(wider["api_key"]).get(KEYS).status_code == 200, "still in force"
    assert manager.delete(KEY, key_id=narrower["id"]).status_code == 204
    assert tenant.delete(KEY, key_id=wider["id"]).status_code == 204, "a key with every scope may"
