"""Bearer API keys on every tenant route, and request ids on every answer."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from falcon.testing import TestClient

from api.app import create_app
from engine.settings import Settings
from engine.tenancy.credentials import CredentialCache
from engine.tenancy.tenants import create_tenant
from tests.api.support import Api, assert_problem
from tests.factories import ADMIN_TOKEN

# One call per tenant route; ids need not exist, auth is checked before the resource runs.
TENANT_ROUTES = [
    ("GET", "/v1/endpoints", {}),
    ("POST", "/v1/endpoints", {}),
    ("GET", "/v1/endpoints/{endpoint_id}", {"endpoint_id": "ep_x"}),
    ("PATCH", "/v1/endpoints/{endpoint_id}", {"endpoint_id": "ep_x"}),
    ("DELETE", "/v1/endpoints/{endpoint_id}", {"endpoint_id": "ep_x"}),
    ("GET", "/v1/endpoints/{endpoint_id}/secret", {"endpoint_id": "ep_x"}),
    ("POST", "/v1/events", {}),
    ("GET", "/v1/events", {}),
    ("GET", "/v1/events/{event_id}", {"event_id": "evt_x"}),
    ("GET", "/v1/deliveries", {}),
    ("GET", "/v1/deliveries/{delivery_id}", {"delivery_id": "dlv_x"}),
    ("GET", "/v1/deliveries/{delivery_id}/attempts", {"delivery_id": "dlv_x"}),
    ("POST", "/v1/deliveries/{delivery_id}/retry", {"delivery_id": "dlv_x"}),
    ("POST", "/v1/endpoints/{endpoint_id}/recover", {"endpoint_id": "ep_x"}),
    ("GET", "/v1/quarantine", {}),
]
BAD_CREDENTIALS = {
    "missing": None,
    "empty": "",
    "bearer-without-token": "Bearer ",
    "basic-scheme": "Basic aGs6eA==",
    "token-without-scheme": "hk_abcdefghijklmnop",
    "unknown-key": "Bearer hk_this-key-was-never-issued-00000000000",
    "not-a-key": "Bearer sk_live_0123456789",
    "admin-token": f"Bearer {ADMIN_TOKEN}",
    "oversized": "Bearer hk_" + "x" * 5000,
}


@pytest.mark.parametrize(
    ("method", "template", "path"), TENANT_ROUTES, ids=[f"{m} {t}" for m, t, _ in TENANT_ROUTES]
)
@pytest.mark.parametrize("auth", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_a_missing_malformed_or_unknown_bearer_is_401(
    api: Api, method: str, template: str, path: dict[str, str], auth: str | None
) -> None:
    result = api.call(method, template, doc={}, auth=auth, **path)

    problem = assert_problem(result, 401, "Authorization")
    assert problem["type"] == "urn:hookline:problem:unauthorized"
    assert result.headers["www-authenticate"] == 'Bearer realm="hookline"'


def test_the_bearer_scheme_is_case_insensitive(tenant: Api) -> None:
    result = tenant.get("/v1/endpoints", auth=f"bearer {tenant.key}")

    assert result.status_code == 200


def test_a_401_does_not_echo_the_presented_key(api: Api) -> None:
    secret = "hk_do-not-echo-me-0123456789abcdef"
    result = api.get("/v1/endpoints", auth=f"Bearer {secret}")

    assert_problem(result, 401)
    assert secret not in result.text


def test_every_answer_carries_a_request_id(tenant: Api) -> None:
    first = tenant.get("/v1/endpoints")
    second = tenant.get("/v1/endpoints", auth=None)

    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_a_well_formed_request_id_is_echoed_and_a_bad_one_replaced(tenant: Api) -> None:
    kept = tenant.get("/v1/endpoints", headers={"X-Request-Id": "abc-123.def:9"})
    replaced = tenant.get("/v1/endpoints", headers={"X-Request-Id": "bad id\twith spaces"})

    assert kept.headers["x-request-id"] == "abc-123.def:9"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"


def test_the_request_logs_name_the_tenant_whether_its_key_was_looked_up_or_remembered(
    sqlite_settings: Settings, sqlite_db: Any
) -> None:
    """The key is read on a pool thread the first time; the tenant still reaches the loop's logs."""
    tenant, key = create_tenant("Acme")
    app = create_app(
        sqlite_settings,
        database=sqlite_db,
        enqueue=lambda kind, ident: True,
        credentials=CredentialCache(60),
    )
    client = Api(TestClient(app)).as_key(key)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as captured:
        for _ in range(2):  # looked up, then remembered
            assert client.get("/v1/endpoints").status_code == 200

    handled = [line for line in captured if line["event"] == "request"]
    assert [line.get("tenant_id") for line in handled] == [tenant.id, tenant.id]
