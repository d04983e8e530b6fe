"""`POST /v1/tenants`: the admin creates tenants and their first API key."""

from __future__ import annotations

import pytest

from tests.api.conftest import MakeApi
from tests.api.support import Api, assert_matches_openapi, assert_problem, documented_statuses
from tests.factories import ADMIN_TOKEN, make_settings

TENANTS = "/v1/tenants"


def test_the_admin_creates_a_tenant_with_an_api_key(admin: Api) -> None:
    result = admin.post(TENANTS, {"name": "Acme"})

    assert result.status_code == 201
    assert result.json["id"].startswith("ten_")
    assert result.json["name"] == "Acme"
    assert result.json["api_key"].startswith("hk_")


def test_each_tenant_gets_its_own_id_and_key(admin: Api) -> None:
    first = admin.post(TENANTS, {"name": "Acme"}).json
    second = admin.post(TENANTS, {"name": "Acme"}).json

    assert first["id"] != second["id"]
    assert first["api_key"] != second["api_key"]


def test_the_returned_key_authenticates_tenant_routes(admin: Api) -> None:
    key = admin.post(TENANTS, {"name": "Acme"}).json["api_key"]

    result = admin.as_key(key).get("/v1/endpoints")

    assert result.status_code == 200
    assert result.json == {"data": [], "next_cursor": None}


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-admin-token-0123456789", f"Basic {ADMIN_TOKEN}", "Bearer"],
    ids=["missing", "wrong", "not-bearer", "empty-bearer"],
)
def test_a_missing_or_wrong_admin_token_is_401(api: Api, auth: str | None) -> None:
    result = api.post(TENANTS, {"name": "Acme"}, auth=auth)

    problem = assert_problem(result, 401)
    assert problem["type"] == "urn:hookline:problem:unauthorized"
    assert result.headers["www-authenticate"].startswith("Bearer")


def test_a_tenant_key_is_not_an_admin_token(tenant: Api) -> None:
    result = tenant.post(TENANTS, {"name": "Mallory"})

    assert_problem(result, 401)


def test_the_admin_token_is_not_a_tenant_key(admin: Api) -> None:
    result = admin.get("/v1/endpoints")

    assert_problem(result, 401)


def test_without_an_admin_token_configured_the_admin_api_is_403(make_api: MakeApi) -> None:
    api = make_api(make_settings(HOOKLINE_ADMIN_TOKEN=""))

    for auth in (f"Bearer {ADMIN_TOKEN}", "Bearer any-token-at-all"):
        result = api.post(TENANTS, {"name": "Acme"}, auth=auth, check=False)
        problem = assert_problem(result, 403)
        assert problem["type"] == "urn:hookline:problem:admin-disabled"


def test_the_admin_disabled_answer_is_documented(make_api: MakeApi) -> None:
    api = make_api(make_settings(HOOKLINE_ADMIN_TOKEN=""))
    result = api.post(TENANTS, {"name": "Acme"}, auth=f"Bearer {ADMIN_TOKEN}", check=False)

    assert "403" in documented_statuses("POST", TENANTS)
    assert_matches_openapi(
        "POST", TENANTS, 403, result.json, content_type=result.headers["content-type"]
    )


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": 7}, "name"),
        ({"name": "Acme", "plan": "gold"}, "plan"),
    ],
    ids=["missing", "empty", "too-long", "not-a-string", "unknown-field"],
)
def test_an_invalid_tenant_body_is_422_naming_the_field(
    admin: Api, doc: dict[str, object], field: str
) -> None:
    assert_problem(admin.post(TENANTS, doc), 422, field)


def test_the_admin_token_is_checked_before_the_body(api: Api) -> None:
    result = api.post(TENANTS, raw=b"{not json", auth="Bearer nope-nope-nope-nope")

    assert_problem(result, 401)
