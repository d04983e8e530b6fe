"""Every tenant operation needs one scope, documented in `/openapi.json` and enforced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import schemas
from api.errors import Problem
from api.middleware import _require_scope
from engine.db.models import ApiKey
from engine.tenancy.credentials import Principal
from engine.tenancy.tenants import ALL_SCOPES
from tests.api.support import Api, assert_problem

METHODS = ("get", "post", "put", "patch", "delete")
SOME_ID = "x_01ARZ3NDEKTSV4RRFFQ69G5FAV"


def tenant_operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schemas.openapi()["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation and any("apiKey" in option for option in operation["security"]):
                yield method.upper(), path, operation


OPERATIONS = sorted((method, path) for method, path, _ in tenant_operations())


def documented_scope(method: str, path: str) -> str:
    operation = schemas.openapi()["paths"][path][method.lower()]
    [scope] = operation["security"][0]["apiKey"]
    return str(scope)


def fill(path: str) -> dict[str, str]:
    return {name: SOME_ID for name in re.findall(r"{(\w+)}", path)}


def key_with(tenant: Api, scopes: list[str]) -> Api:
    result = tenant.post("/v1/keys", {"scopes": scopes})
    assert result.status_code == 201, result.text
    return tenant.as_key(result.json["api_key"])


def test_every_tenant_operation_documents_one_scope_for_keys_and_tokens_and_a_403() -> None:
    wrong = []
    for method, path, operation in tenant_operations():
        # The admin token may read some tenant routes as well (`/v1/audit-log`): no scope.
        options = [option for option in operation["security"] if "adminToken" not in option]
        scopes = [scope for option in options for scopes in option.values() for scope in scopes]
        if len(options) != 2 or len(set(scopes)) != 1 or scopes[0] not in ALL_SCOPES:
            wrong.append(f"{method} {path}: security {options}")
        if "403" not in operation["responses"]:
            wrong.append(f"{method} {path}: no 403")
    assert wrong == []


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_key_without_the_documented_scope_is_403_naming_it(
    tenant: Api, method: str, path: str
) -> None:
    scope = documented_scope(method, path)
    lacking = key_with(tenant, [s for s in ALL_SCOPES if s != scope])

    result = lacking.call(method, path, doc={}, **fill(path))

    problem = assert_problem(result, 403)
    assert problem["type"] == "urn:hookline:problem:forbidden"
    assert scope in problem["detail"]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_key_with_only_the_documented_scope_gets_past_the_check(
    tenant: Api, method: str, path: str
) -> None:
    holding = key_with(tenant, [documented_scope(method, path)])

    result = holding.call(method, path, doc={}, **fill(path))

    assert result.status_code not in (401, 403), result.text


def test_a_key_whose_scopes_are_taken_away_is_refused_on_the_next_request(tenant: Api) -> None:
    narrow = key_with(tenant, ["endpoints:read"])
    ApiKey.update(scopes=[]).execute()

    assert_problem(narrow.get("/v1/endpoints"), 403)
    assert_problem(tenant.get("/v1/keys"), 403)


class _Undeclared:
    def on_get(self) -> None: ...

    def on_post_item(self) -> None: ...


class _Declared(_Undeclared):
    scopes = {"GET": "endpoints:read", "POST": "endpoints:write"}


def principal(*scopes: str) -> Principal:
    return Principal("ten_x", "key_x", frozenset(scopes))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_served_method_without_a_declared_scope_fails_closed(method: str) -> None:
    with pytest.raises(RuntimeError, match=f"declares no scope for {method}"):
        _require_scope(method, _Undeclared(), principal(*ALL_SCOPES))


def test_a_method_nobody_serves_needs_no_scope_so_falcon_can_answer_405() -> None:
    _require_scope("DELETE", _Undeclared(), principal())
    _require_scope("OPTIONS", _Declared(), principal())


def test_the_scope_is_read_per_method() -> None:
    _require_scope("GET", _Declared(), principal("endpoints:read"))
    with pytest.raises(Problem) as caught:
        _require_scope("POST", _Declared(), principal("endpoints:read"))
    assert (caught.value.status_code, caught.value.slug) == (403, "forbidden")
    assert caught.value.headers["WWW-Authenticate"] == (
        'Bearer realm="hookline", error="insufficient_scope", scope="endpoints:write"'
    ), "RFC 6750 §3.1: the challenge names the scope"


def test_reading_a_signing_secret_takes_endpoints_write(tenant: Api) -> None:
    """A read-only key that could read the secret could sign webhooks the receiver believes."""
    endpoint = tenant.post("/v1/endpoints", {"url": "https://example.com/hook"}).json
    reader = key_with(tenant, ["endpoints:read"])
    writer = key_with(tenant, ["endpoints:write"])
    path = "/v1/endpoints/{endpoint_id}/secret"

    refused = reader.get(path, endpoint_id=endpoint["id"])
    problem = assert_problem(refused, 403)
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert "endpoints:write" in problem["detail"]
    assert endpoint["secret"] not in refused.text
    assert writer.get(path, endpoint_id=endpoint["id"]).json["secret"] == endpoint["secret"]
    assert documented_scope("GET", "/v1/endpoints/{endpoint_id}/secret") == "endpoints:write"
