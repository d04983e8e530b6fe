"""Endpoint headers and tenant alert channels: sealed at rest, answered as "***"."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from engine import sealed_fields, secretbox
from engine.db.models import Endpoint, Tenant, db
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.errors import CryptoError
from engine.settings import Settings
from engine.tenancy.tenants import authenticate_key
from tests.api.support import Api, assert_problem

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
TENANT = "/v1/tenants/{tenant_id}"
TOKEN = "Bearer tok-5f2a9c1e7b"
SLACK = "https://hooks.slack.example/services/T0/B0/slacksecret77"
ROUTING_KEY = "pdkey-3c9e1a"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CHANNELS = {
    "slack_webhook_url": SLACK,
    "pagerduty_routing_key": ROUTING_KEY,
    "email_to": ["ops@example.com"],
    "webhook_url": "https://ops.example.com/alerts",
    "webhook_secret": WEBHOOK_SECRET,
}
SECRET_FIELDS = ("slack_webhook_url", "pagerduty_routing_key", "webhook_secret")
FINGERPRINT = r"^hmac-sha256:[0-9a-f]{8}$"


@pytest.fixture
def box(sqlite_settings: Settings) -> secretbox.SecretBox:
    return secretbox.from_settings(sqlite_settings)


def tenant_id_of(tenant: Api) -> str:
    assert tenant.key is not None
    principal = authenticate_key(tenant.key)
    assert principal is not None
    return principal.tenant_id


def raw(table: str, column: str, row_id: str) -> str:
    """The column's text as the database holds it."""
    [[value]] = db.execute_sql(f"SELECT {column} FROM {table} WHERE id = ?", (row_id,)).fetchall()
    return str(value)


def assert_masked_headers(body: dict[str, Any], names: set[str]) -> None:
    assert body["headers"] == dict.fromkeys(names, "***")
    assert set(body["header_fingerprints"]) == names
    for value in body["header_fingerprints"].values():
        assert value.startswith("hmac-sha256:") and len(value) == len("hmac-sha256:") + 8


def assert_masked_channels(body: dict[str, Any]) -> None:
    assert body["alert_channels"] == {**CHANNELS, **dict.fromkeys(SECRET_FIELDS, "***")}
    assert set(body["alert_channel_fingerprints"]) == set(SECRET_FIELDS)


def test_an_endpoints_headers_are_sealed_in_its_row(tenant: Api, box: Any) -> None:
    created = tenant.post(
        ENDPOINTS, {"url": "https://r.example.com/in", "headers": {"Authorization": TOKEN}}
    )

    stored = raw("endpoint", "headers", created.json["id"])
    assert TOKEN not in stored and "tok-5f2a9c1e7b" not in stored
    assert set(json.loads(stored)) == {"(sealed)"}
    row = Endpoint.get_by_id(created.json["id"])
    assert sealed_fields.open_headers(row.headers, box, row.id) == {"Authorization": TOKEN}


def test_every_answer_that_shows_an_endpoint_shows_its_headers_masked(tenant: Api) -> None:
    headers = {"Authorization": TOKEN, "X-Team": "billing"}
    created = tenant.post(ENDPOINTS, {"url": "https://r.example.com/in", "headers": headers}).json
    endpoint_id = created["id"]
    answers = [
        created,
        tenant.get(ENDPOINT, endpoint_id=endpoint_id).json,
        tenant.get(ENDPOINTS).json["data"][0],
        tenant.patch(ENDPOINT, {"description": "x"}, endpoint_id=endpoint_id).json,
        tenant.post(ENDPOINT + "/pause", endpoint_id=endpoint_id).json,
        tenant.post(ENDPOINT + "/resume", endpoint_id=endpoint_id).json["endpoint"],
    ]

    for answer in answers:
        assert_masked_headers(answer, set(headers))
        assert TOKEN not in json.dumps(answer) and "billing" not in json.dumps(answer)
    prints = created["header_fingerprints"]
    assert prints["Authorization"] != prints["X-Team"], "two values are told apart"


def test_a_header_read_and_written_back_keeps_its_value_and_one_left_out_is_removed(
    tenant: Api, box: Any
) -> None:
    headers = {"Authorization": TOKEN, "X-Team": "billing", "X-Old": "gone"}
    created = tenant.post(ENDPOINTS, {"url": "https://r.example.com/in", "headers": headers}).json
    read = tenant.get(ENDPOINT, endpoint_id=created["id"]).json
    written = {k: v for k, v in read["headers"].items() if k != "X-Old"} | {"X-Team": "ops"}

    patched = tenant.patch(ENDPOINT, {"headers": written}, endpoint_id=created["id"])

    assert patched.status_code == 200
    assert (
        patched.json["header_fingerprints"]["Authorization"]
        == read["header_fingerprints"]["Authorization"]
    )
    row = Endpoint.get_by_id(created["id"])
    opened = sealed_fields.open_headers(row.headers, box, row.id)
    assert opened == {"Authorization": TOKEN, "X-Team": "ops"}


def test_a_masked_header_with_no_value_to_keep_is_refused_naming_it(
    tenant: Api, create_endpoint: Callable[..., dict[str, Any]]
) -> None:
    created = tenant.post(
        ENDPOINTS, {"url": "https://r.example.com/in", "headers": {"X-Key": "***"}}
    )
    assert_problem(created, 422, "headers.X-Key")

    endpoint = create_endpoint(headers={"X-Team": "billing"})
    patched = tenant.patch(ENDPOINT, {"headers": {"X-New": "***"}}, endpoint_id=endpoint["id"])
    assert_problem(patched, 422, "headers.X-New")


def test_sealed_headers_copied_to_another_endpoint_do_not_open(
    create_endpoint: Callable[..., dict[str, Any]], box: Any
) -> None:
    first = create_endpoint(headers={"Authorization": TOKEN})
    second = create_endpoint()
    stolen = Endpoint.get_by_id(first["id"]).headers
    Endpoint.update(headers=stolen).where(Endpoint.id == second["id"]).execute()

    with pytest.raises(CryptoError):
        sealed_fields.open_headers(stolen, secretbox.SecretBox(box.key), second["id"])


def test_the_workers_request_carries_the_real_header_values(
    tenant: Api,
    create_endpoint: Callable[..., dict[str, Any]],
    publish: Callable[..., dict[str, Any]],
    box: Any,
) -> None:
    endpoint = create_endpoint(headers={"Authorization": TOKEN})
    [delivery_id] = fanout.fan_out(publish()["id"])
    claimed = deliveries.claim(delivery_id, lease_s=30)
    assert claimed is not None

    request = deliveries.build_request(claimed, user_agent="t", timestamp=1, box=box)

    assert claimed.endpoint.id == endpoint["id"]
    assert request.headers["Authorization"] == TOKEN
    assert TOKEN not in repr(request), "a request's repr never shows its headers"


def test_a_tenants_alert_channel_secrets_are_sealed_in_its_row(
    admin: Api, tenant: Api, box: Any
) -> None:
    tenant_id = tenant_id_of(tenant)

    admin.patch(TENANT, {"alert_channels": CHANNELS}, tenant_id=tenant_id)

    stored = raw("tenant", "alert_channels", tenant_id)
    for secret in (SLACK, "slacksecret77", ROUTING_KEY, WEBHOOK_SECRET):
        assert secret not in stored
    assert "https://ops.example.com/alerts" in stored, "the webhook URL stays in the clear"
    row = Tenant.get_by_id(tenant_id)
    assert sealed_fields.open_channels(row.alert_channels, box, tenant_id) == CHANNELS


def test_every_admin_answer_that_shows_a_tenant_shows_its_channels_masked(
    admin: Api, tenant: Api
) -> None:
    tenant_id = tenant_id_of(tenant)
    answers = [
        admin.patch(TENANT, {"alert_channels": CHANNELS}, tenant_id=tenant_id).json,
        admin.get(TENANT, tenant_id=tenant_id).json,
        next(t for t in admin.get("/v1/tenants").json["data"] if t["id"] == tenant_id),
        admin.post(TENANT + "/suspend", tenant_id=tenant_id).json,
        admin.post(TENANT + "/resume", tenant_id=tenant_id).json,
        admin.delete(TENANT, tenant_id=tenant_id).json,
    ]

    for answer in answers:
        assert_masked_channels(answer)
        for secret in (SLACK, ROUTING_KEY, WEBHOOK_SECRET):
            assert secret not in json.dumps(answer)


def test_alert_channels_read_and_written_back_keep_their_secrets(
    admin: Api, tenant: Api, box: Any
) -> None:
    tenant_id = tenant_id_of(tenant)
    admin.patch(TENANT, {"alert_channels": CHANNELS}, tenant_id=tenant_id)
    read = admin.get(TENANT, tenant_id=tenant_id).json["alert_channels"]
    written = {k: v for k, v in read.items() if k != "pagerduty_routing_key"}

    patched = admin.patch(TENANT, {"alert_channels": written}, tenant_id=tenant_id)

    assert patched.status_code == 200
    row = Tenant.get_by_id(tenant_id)
    opened = sealed_fields.open_channels(row.alert_channels, box, tenant_id)
    assert opened == {k: v for k, v in CHANNELS.items() if k != "pagerduty_routing_key"}


def test_a_masked_alert_secret_with_no_value_to_keep_is_refused_naming_it(
    admin: Api, tenant: Api
) -> None:
    result = admin.patch(
        TENANT, {"alert_channels": {"pagerduty_routing_key": "***"}}, tenant_id=tenant_id_of(tenant)
    )

    assert_problem(result, 422, "alert_channels.pagerduty_routing_key")


def test_sealed_alert_channels_copied_to_another_tenant_do_not_open(
    admin: Api, tenant: Api, box: Any
) -> None:
    tenant_id = tenant_id_of(tenant)
    admin.patch(TENANT, {"alert_channels": CHANNELS}, tenant_id=tenant_id)
    other = admin.post("/v1/tenants", {"name": "other"}).json["id"]
    stolen = Tenant.get_by_id(tenant_id).alert_channels
    Tenant.update(alert_channels=stolen).where(Tenant.id == other).execute()

    with pytest.raises(CryptoError):
        sealed_fields.open_channels(stolen, secretbox.SecretBox(box.key), other)


def test_a_fingerprint_is_keyed_so_it_confirms_no_guess_without_the_key(box: Any) -> None:
    other = secretbox.SecretBox(os.urandom(32))

    assert sealed_fields.fingerprint("hunter2", box) == sealed_fields.fingerprint("hunter2", box)
    assert sealed_fields.fingerprint("hunter2", box) != sealed_fields.fingerprint("hunter2", other)
