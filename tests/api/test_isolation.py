"""One tenant can never see or touch another's data: every route, walked from `/openapi.json`.

The walk reads the document, not a list kept here, so a route added later is
walked too. Called with a second tenant's credentials (holding every scope)
against the first tenant's ids, an item route must answer 404 (never 200,
204 or 403, which would leak that the id exists), a collection route must
answer without any of the first tenant's ids, and the first tenant's data
must be intact afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import schemas
from engine.deliveries import fanout
from tests.api.support import Api, assert_problem
from tests.factories import endpoint_body, event_body

METHODS = ("get", "post", "put", "patch", "delete")
# A valid body per request schema, so a 404 is never masked by a 422. Add one for a new schema.
BODIES: dict[str, Any] = {
    "EndpointCreate": endpoint_body(url="https://stranger.example.com/hook"),
    "EndpointUpdate": {"description": "changed by a stranger"},
    "EndpointEnable": {"replay": True},
    "EndpointTest": {"event_type": "stranger.test", "data": {"n": 1}},
    "EventCreate": event_body("stranger.event"),
    "EventBatch": {"events": [event_body("stranger.event")]},
    "EventTypeDefinitionCreate": {"name": "stranger.event"},
    "EventTypeDefinitionUpdate": {"description": "changed by a stranger"},
    "KeyCreate": {"scopes": ["endpoints:read"]},
    "OAuthClientCreate": {"name": "stranger", "scopes": ["endpoints:read"]},
    "RecoverRequest": {"since": "2000-01-01T00:00:00Z"},
    "ReplayCreate": {"since": "2000-01-01T00:00:00Z"},
    "BackfillRequest": {"since": "2000-01-01T00:00:00Z"},
    "SecretRotate": {},
    "TenantCreate": {"name": "Initech"},
    "TenantUpdate": {"rate_limits": {"management_per_s": 1}},
    # Another tenant's endpoint_id in a preview is a 404 (tests/api/test_transforms.py).
    "TransformPreview": {"transform": {"jmespath": "[type]"}, "event": {"type": "a.b", "data": {}}},
}


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schemas.openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


# The OAuth2 endpoints authenticate a client, not a tenant's bearer credential: that a client
# sees only its own tokens is tested in tests/api/test_oauth_server.py.
OPERATIONS = sorted(
    (method, path)
    for method, path, operation in operations()
    if operation["security"] != [] and {"oauthClient": []} not in operation["security"]
)


@pytest.fixture
def owned(tenant: Api) -> dict[str, str]:
    """Ids of everything the first tenant owns, by path parameter name."""
    endpoint = tenant.post("/v1/endpoints", endpoint_body(description="mine")).json
    event = tenant.post("/v1/events", event_body()).json
    [delivery_id] = fanout.fan_out(event["id"])
    key = tenant.post("/v1/keys", {"name": "mine", "scopes": ["endpoints:read"]}).json
    declared = tenant.post("/v1/event-types", {"name": "first.tenant.type"}).json
    replay = tenant.post("/v1/replays", {"since": "2000-01-01T00:00:00Z"}).json
    client = tenant.post("/v1/oauth-clients", {"name": "mine", "scopes": ["endpoints:read"]}).json
    return {
        "client_id": client["client_id"],
        "replay_id": replay["id"],
        "name": declared["name"],
        "endpoint_id": endpoint["id"],
        "event_id": event["id"],
        "delivery_id": delivery_id,
        "key_id": key["id"],
        "api_key": key["api_key"],
    }


def request_body(operation: dict[str, Any]) -> Any:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if schema is None:
        return None
    name = schema["schema"]["$ref"].rsplit("/", 1)[-1]
    assert name in BODIES, f"add a valid {name} body to BODIES"
    return BODIES[name]


def query(operation: dict[str, Any], owned: dict[str, str]) -> dict[str, str]:
    """The first tenant's ids as filters, wherever a list takes one."""
    names = {p.get("name") for p in operation.get("parameters", [])}
    return {name: owned[name] for name in names if name in owned}


def leaked(text: str, owned: dict[str, str], sent: dict[str, str]) -> list[str]:
    """The first tenant's ids in an answer, apart from those the request itself carried."""
    return [k for k, v in owned.items() if v in text and v not in sent.values()]


def walk(stranger: Api, owned: dict[str, str], method: str, path: str) -> None:
    """Call one operation as the stranger with the first tenant's ids; fail on any leak."""
    operation = schemas.openapi()["paths"][path][method.lower()]
    names = re.findall(r"{(\w+)}", path)
    body = request_body(operation)
    kwargs: dict[str, Any] = {} if body is None else {"doc": body}

    if all("adminToken" in option for option in operation["security"]):  # admin only
        ids = {name: "ten_01ARZ3NDEKTSV4RRFFQ69G5FAV" for name in names}
        assert_problem(stranger.call(method, path, **kwargs, **ids), 401)
        return
    missing = [name for name in names if name not in owned]
    assert missing == [], f"the walk has no id of the first tenant for {missing}"
    sent = {**query(operation, owned), **{name: owned[name] for name in names}}
    result = stranger.call(
        method, path, params=query(operation, owned), **kwargs, **{n: owned[n] for n in names}
    )

    if names:
        problem = assert_problem(result, 404)
        assert problem["type"] == "urn:hookline:problem:not-found"
    else:
        assert result.status_code < 300, result.text
    assert leaked(result.text, owned, sent) == []


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_another_tenant_gets_404_or_nothing_of_the_first_tenants(
    stranger: Api, owned: dict[str, str], method: str, path: str
) -> None:
    walk(stranger, owned, method, path)


def test_after_the_whole_walk_the_first_tenants_data_is_intact(
    tenant: Api, stranger: Api, owned: dict[str, str]
) -> None:
    secret = tenant.get("/v1/endpoints/{endpoint_id}/secret", endpoint_id=owned["endpoint_id"])
    replay = tenant.get("/v1/replays/{replay_id}", replay_id=owned["replay_id"]).json

    for method, path in OPERATIONS:
        walk(stranger, owned, method, path)

    again = tenant.get("/v1/endpoints/{endpoint_id}/secret", endpoint_id=owned["endpoint_id"])
    assert again.json == secret.json
    endpoint = tenant.get("/v1/endpoints/{endpoint_id}", endpoint_id=owned["endpoint_id"])
    assert endpoint.status_code == 200
    assert endpoint.json["description"] == "mine"
    assert endpoint.json["paused"] is False
    assert tenant.get("/v1/replays/{replay_id}", replay_id=owned["replay_id"]).json == replay
    delivery = tenant.get("/v1/deliveries/{delivery_id}", delivery_id=owned["delivery_id"])
    assert delivery.status_code == 200
    assert tenant.as_key(owned["api_key"]).get("/v1/endpoints").status_code == 200
    assert owned["key_id"] in {key["id"] for key in tenant.get("/v1/keys").json["data"]}
    declared = tenant.get("/v1/event-types/{name}", name=owned["name"]).json
    assert (declared["description"], declared["archived"]) == (None, False)


def test_the_walk_covers_every_kind_of_id_and_both_credential_kinds() -> None:
    names = {name for _, path in OPERATIONS for name in re.findall(r"{(\w+)}", path)}

    assert {"endpoint_id", "event_id", "delivery_id", "key_id"} <= names
    assert ("DELETE", "/v1/keys/{key_id}") in OPERATIONS
    assert ("PATCH", "/v1/tenants/{tenant_id}") in OPERATIONS
