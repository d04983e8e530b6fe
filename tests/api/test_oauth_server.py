"""Hookline as an OAuth2 authorization server (issue 19 §2): clients, the client-credentials
grant, its RFC 6749 errors, introspection, revocation and the JWKS."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import pytest

from engine.db.models import OAuthClient, utcnow
from engine.settings import Settings
from engine.tenancy import oauth
from tests.api.conftest import MakeApi, new_tenant
from tests.api.support import Api, Result, assert_problem

CLIENTS = "/v1/oauth-clients"
CLIENT = "/v1/oauth-clients/{client_id}"
TOKEN, INTROSPECT, REVOKE = "/oauth/token", "/oauth/introspect", "/oauth/revoke"
FORM = "application/x-www-form-urlencoded"


def basic(client: dict[str, Any]) -> str:
    pair = f"{quote(client['client_id'])}:{quote(client['client_secret'])}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def form(
    api: Api, path: str, fields: dict[str, str], *, auth: str | None = None, **kw: Any
) -> Result:
    raw = urlencode(fields).encode()
    return api.call("POST", path, raw=raw, content_type=FORM, auth=auth, **kw)


def new_client(tenant: Api, scopes: list[str], name: str = "billing-sync") -> dict[str, Any]:
    created = tenant.post(CLIENTS, {"name": name, "scopes": scopes})
    assert created.status_code == 201, created.text
    return dict(created.json)


def token_for(api: Api, client: dict[str, Any], **fields: str) -> Result:
    return form(api, TOKEN, {"grant_type": "client_credentials", **fields}, auth=basic(client))


@pytest.fixture
def client(tenant: Api) -> dict[str, Any]:
    return new_client(tenant, ["endpoints:read", "endpoints:write"])


def test_a_client_gets_a_token_that_works_on_the_v1_routes_within_its_scopes(
    tenant: Api, client: dict[str, Any]
) -> None:
    got = token_for(tenant, client)
    bearer = tenant.as_key(got.json["access_token"])
    header = jwt.get_unverified_header(got.json["access_token"])
    claims = jwt.decode(got.json["access_token"], options={"verify_signature": False})
    keys = tenant.get("/.well-known/jwks.json", auth=None).json["keys"]

    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "no-store"
    assert (got.json["token_type"], got.json["expires_in"]) == ("Bearer", 900)
    assert got.json["scope"] == "endpoints:read endpoints:write"
    assert (header["alg"], header["typ"]) == ("ES256", "at+jwt")
    assert claims["client_id"] == claims["sub"] == client["client_id"]
    assert header["kid"] in [k["kid"] for k in keys], "its key is published"
    assert "d" not in keys[0], "only the public half"
    assert bearer.post("/v1/endpoints", {"url": "https://example.com/hook"}).status_code == 201
    assert bearer.get("/v1/endpoints").status_code == 200
    refused = bearer.post("/v1/events", {"event_type": "a.b", "payload": {}})
    assert_problem(refused, 403)
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]


def test_a_scope_may_narrow_the_clients_never_widen_them(
    tenant: Api, client: dict[str, Any]
) -> None:
    narrow = token_for(tenant, client, scope="endpoints:read")
    wide = token_for(tenant, client, scope="endpoints:read events:write")
    bearer = tenant.as_key(narrow.json["access_token"])

    assert narrow.json["scope"] == "endpoints:read"
    assert bearer.get("/v1/endpoints").status_code == 200
    assert_problem(bearer.post("/v1/endpoints", {"url": "https://example.com/h"}), 403)
    assert (wide.status_code, wide.json["error"]) == (400, "invalid_scope")


def test_the_secret_may_come_in_the_form_instead_but_not_both_ways(
    tenant: Api, client: dict[str, Any]
) -> None:
    fields = {"grant_type": "client_credentials", **client}
    fields = {k: fields[k] for k in ("grant_type", "client_id", "client_secret")}

    in_form = form(tenant, TOKEN, fields)
    both = form(tenant, TOKEN, fields, auth=basic(client))

    assert in_form.status_code == 200, in_form.text
    assert (both.status_code, both.json["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"grant_type": "password", "username": "u"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_secret": "hcs_wrong"},
            400,
            "invalid_request",
        ),
    ],
)
def test_rfc_6749_errors_of_the_token_endpoint(
    tenant: Api, client: dict[str, Any], fields: dict[str, str], status: int, error: str
) -> None:
    got = form(tenant, TOKEN, fields, auth=basic(client))

    assert (got.status_code, got.json["error"]) == (status, error), got.text
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["content-type"].startswith("application/json")


def test_a_wrong_secret_an_unknown_client_or_none_is_invalid_client_401(
    tenant: Api, client: dict[str, Any]
) -> None:
    wrong = token_for(tenant, {**client, "client_secret": "hcs_" + "x" * 43})
    unknown = token_for(tenant, {**client, "client_id": "oac_01AAAAAAAAAAAAAAAAAAAAAAAA"})
    anonymous = form(tenant, TOKEN, {"grant_type": "client_credentials"})
    repeated = tenant.call(
        "POST",
        TOKEN,
        raw=b"grant_type=client_credentials&grant_type=client_credentials",
        content_type=FORM,
        auth=basic(client),
    )
    as_json = tenant.call(
        "POST", TOKEN, doc={"grant_type": "client_credentials"}, auth=basic(client)
    )

    for got in (wrong, unknown, anonymous):
        assert (got.status_code, got.json["error"]) == (401, "invalid_client"), got.text
        assert got.headers["www-authenticate"] == 'Basic realm="hookline"'
    assert (repeated.status_code, repeated.json["error"]) == (400, "invalid_request")
    assert (as_json.status_code, as_json.json["error"]) == (400, "invalid_request")


def test_introspection_shows_a_client_its_own_live_tokens_only(tenant: Api) -> None:
    ours = new_client(tenant, ["endpoints:read"], "ours")
    theirs = new_client(tenant, ["endpoints:read"], "theirs")
    token = token_for(tenant, ours).json["access_token"]

    seen = form(tenant, INTROSPECT, {"token": token}, auth=basic(ours))
    by_other = form(tenant, INTROSPECT, {"token": token}, auth=basic(theirs))
    garbage = form(tenant, INTROSPECT, {"token": "not-a-token"}, auth=basic(ours))
    anonymous = form(tenant, INTROSPECT, {"token": token})

    assert seen.status_code == 200, seen.text
    assert seen.json["active"] is True
    assert (seen.json["client_id"], seen.json["scope"]) == (ours["client_id"], "endpoints:read")
    assert by_other.json == {"active": False}
    assert garbage.json == {"active": False}
    assert anonymous.status_code == 401


def test_a_revoked_token_is_inactive_and_refused_and_revoking_twice_is_fine(tenant: Api) -> None:
    client = new_client(tenant, ["endpoints:read"])
    token = token_for(tenant, client).json["access_token"]

    revoked = form(tenant, REVOKE, {"token": token}, auth=basic(client))
    again = form(
        tenant, REVOKE, {"token": token, "token_type_hint": "access_token"}, auth=basic(client)
    )
    unknown = form(tenant, REVOKE, {"token": "nothing"}, auth=basic(client))
    seen = form(tenant, INTROSPECT, {"token": token}, auth=basic(client))
    used = tenant.as_key(token).get("/v1/endpoints")

    assert (revoked.status_code, again.status_code, unknown.status_code) == (200, 200, 200)
    assert seen.json == {"active": False}
    assert "revoked" in assert_problem(used, 401)["detail"]
    assert oauth.sweep_revoked(utcnow()) == 0, "kept while the token could be used"
    assert oauth.sweep_revoked(utcnow() + dt.timedelta(hours=2)) == 1, "then forgotten"


def test_deleting_a_client_ends_its_tokens_and_its_secret(tenant: Api) -> None:
    client = new_client(tenant, ["endpoints:read"])
    token = token_for(tenant, client).json["access_token"]

    listed = tenant.get(CLIENTS).json["data"]
    shown = tenant.get(CLIENT, client_id=client["client_id"]).json
    deleted = tenant.delete(CLIENT, client_id=client["client_id"])

    assert [c["client_id"] for c in listed] == [client["client_id"]]
    assert "client_secret" not in shown and "client_secret" not in listed[0]
    assert deleted.status_code == 204
    assert_problem(tenant.as_key(token).get("/v1/endpoints"), 401)
    assert token_for(tenant, client).status_code == 401
    assert_problem(tenant.get(CLIENT, client_id=client["client_id"]), 404)
    stored = OAuthClient.get_by_id(client["client_id"]).secret_hash
    assert client["client_secret"] not in stored, "only a digest is kept"


def test_a_client_holds_only_scopes_its_creator_holds_and_tenants_do_not_meet(
    tenant: Api, admin: Api
) -> None:
    manager = tenant.as_key(
        tenant.post("/v1/keys", {"scopes": ["keys:manage", "endpoints:read"]}).json["api_key"]
    )
    other = new_tenant(admin, "Globex")
    client = new_client(tenant, ["endpoints:write"])

    wider = manager.post(CLIENTS, {"name": "x", "scopes": ["endpoints:write"]})
    delete_wider = manager.delete(CLIENT, client_id=client["client_id"])

    assert_problem(wider, 403)
    assert_problem(delete_wider, 403)
    assert other.get(CLIENTS).json["data"] == []
    assert_problem(other.get(CLIENT, client_id=client["client_id"]), 404)
    assert_problem(other.delete(CLIENT, client_id=client["client_id"]), 404)


def test_the_token_endpoint_is_limited_per_client_and_per_address(
    make_api: MakeApi, sqlite_settings: Settings
) -> None:
    api = make_api(dataclasses.replace(sqlite_settings, oauth2_token_requests_per_min=3))
    tenant = new_tenant(api.as_key(sqlite_settings.admin_token), "Acme")
    client = new_client(tenant, ["endpoints:read"])

    codes = [token_for(tenant, client, remote_addr="203.0.113.9").status_code for _ in range(4)]
    limited = token_for(tenant, client, remote_addr="203.0.113.9")
    elsewhere = token_for(tenant, client, remote_addr="198.51.100.7")

    assert codes == [200, 200, 200, 429]
    assert (limited.json["error"], int(limited.headers["retry-after"]) > 0) == ("slow_down", True)
    assert elsewhere.status_code == 429, "the client's own budget is spent too"
