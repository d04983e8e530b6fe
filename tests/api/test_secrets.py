"""Endpoint secrets through the API: supplied on create, read, rotated with a grace period."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from engine import sealed_fields, secretbox
from engine.db.models import Endpoint, Tenant
from engine.settings import Settings
from tests.api.support import Api, assert_problem
from tests.api.test_oauth_server import new_client, token_for
from tests.factories import SECRET_KEY, endpoint_body

ENDPOINTS = "/v1/endpoints"
SECRET = "/v1/endpoints/{endpoint_id}/secret"
ROTATE = "/v1/endpoints/{endpoint_id}/secret/rotate"
MINE = "whsec_" + base64.b64encode(b"m" * 32).decode()
CreateEndpoint = Callable[..., dict[str, Any]]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_supplied_secret_is_the_one_answered_and_kept(tenant: Api) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(secret=MINE))

    assert created.status_code == 201
    assert created.json["secret"] == MINE
    assert tenant.get(SECRET, endpoint_id=created.json["id"]).json == {"secret": MINE}


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(b"s" * 23).decode(),
        "whsec_" + base64.b64encode(b"s" * 65).decode(),
        "whsec_" + "A" * 33,
        "sk_live_" + "A" * 40,
        "whsec_" + "A" * 30 + "!!",
        "",
    ],
    ids=["23-bytes", "65-bytes", "bad-padding", "no-prefix", "not-base64", "empty"],
)
def test_a_bad_supplied_secret_is_422_naming_secret(tenant: Api, secret: str) -> None:
    result = tenant.post(ENDPOINTS, endpoint_body(secret=secret))

    assert_problem(result, 422, "secret")
    assert tenant.get(ENDPOINTS).json["data"] == []


def test_secrets_are_stored_encrypted(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint()

    stored = Endpoint.get_by_id(created["id"]).secret

    assert stored.startswith("v1:")
    assert created["secret"] not in stored and created["secret"][6:] not in stored


def test_a_rotation_answers_the_new_secret_and_keeps_the_old_one_for_a_day(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    rotated = tenant.post(ROTATE, endpoint_id=created["id"])

    assert rotated.status_code == 200
    body = rotated.json
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret"] == created["secret"]
    expires = parse_time(body["previous_secret_expires_at"])
    assert abs(expires - (now() + dt.timedelta(hours=24))) < dt.timedelta(minutes=1)
    assert tenant.get(SECRET, endpoint_id=created["id"]).json == body


def test_a_rotation_takes_a_supplied_secret_and_grace_period(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    rotated = tenant.post(
        ROTATE, {"secret": MINE, "grace_period_s": 600}, endpoint_id=created["id"]
    )

    assert rotated.json["secret"] == MINE
    expires = parse_time(rotated.json["previous_secret_expires_at"])
    assert abs(expires - (now() + dt.timedelta(minutes=10))) < dt.timedelta(minutes=1)


def test_a_rotation_with_no_grace_period_retires_the_old_secret_at_once(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    rotated = tenant.post(ROTATE, {"grace_period_s": 0}, endpoint_id=created["id"])

    assert set(rotated.json) == {"secret"}
    assert tenant.get(SECRET, endpoint_id=created["id"]).json == rotated.json


def test_an_empty_json_body_rotates_with_the_defaults(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    rotated = tenant.post(ROTATE, {}, endpoint_id=created["id"])

    assert rotated.json["previous_secret"] == created["secret"]


def test_the_default_grace_period_is_a_setting(
    make_api: Callable[..., Api],
    sqlite_settings: Settings,
    tenant: Api,
    create_endpoint: CreateEndpoint,
) -> None:
    created = create_endpoint()
    short = make_api(sqlite_settings.with_overrides(secret_rotation_grace_s=60)).as_key(tenant.key)

    rotated = short.post(ROTATE, endpoint_id=created["id"])

    expires = parse_time(rotated.json["previous_secret_expires_at"])
    assert abs(expires - (now() + dt.timedelta(seconds=60))) < dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"grace_period_s": 7 * 86400 + 1}, "grace_period_s"),
        ({"grace_period_s": -1}, "grace_period_s"),
        ({"grace_period_s": 1.5}, "grace_period_s"),
        ({"secret": "whsec_short"}, "secret"),
        ({"secret": "whsec_" + base64.b64encode(b"s" * 23).decode()}, "secret"),
        ({"colour": "red"}, "colour"),
        ([], "(body)"),
    ],
    ids=[
        "grace-too-long",
        "grace-negative",
        "grace-float",
        "secret-short",
        "secret-23-bytes",
        "unknown",
        "not-an-object",
    ],
)
def test_a_bad_rotation_is_422_naming_the_field_and_changes_nothing(
    tenant: Api, create_endpoint: CreateEndpoint, doc: Any, field: str
) -> None:
    created = create_endpoint()

    result = tenant.post(ROTATE, doc, endpoint_id=created["id"])

    assert_problem(result, 422, field)
    assert tenant.get(SECRET, endpoint_id=created["id"]).json == {"secret": created["secret"]}


def test_a_rotation_body_must_be_json(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint()

    wrong_type = tenant.post(
        ROTATE, raw=b"grace=1", content_type="text/plain", endpoint_id=created["id"]
    )
    malformed = tenant.post(ROTATE, raw=b"{", endpoint_id=created["id"])

    assert_problem(wrong_type, 415)
    assert_problem(malformed, 400)


@pytest.mark.parametrize("template", [SECRET, ROTATE], ids=["read", "rotate"])
def test_another_tenants_secret_is_404_and_untouched(
    tenant: Api, stranger: Api, create_endpoint: CreateEndpoint, template: str
) -> None:
    created = create_endpoint()
    method = "GET" if template == SECRET else "POST"

    result = stranger.call(method, template, endpoint_id=created["id"])

    assert_problem(result, 404)
    assert created["secret"] not in result.text
    assert tenant.get(SECRET, endpoint_id=created["id"]).json == {"secret": created["secret"]}


def test_a_deleted_endpoints_secret_cannot_be_rotated(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()
    tenant.delete("/v1/endpoints/{endpoint_id}", endpoint_id=created["id"])

    assert_problem(tenant.post(ROTATE, endpoint_id=created["id"]), 404)


def test_the_previous_secret_is_no_longer_shown_once_it_expired(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()
    tenant.post(ROTATE, {"grace_period_s": 60}, endpoint_id=created["id"])
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
    Endpoint.update(previous_secret_expires_at=past).where(Endpoint.id == created["id"]).execute()

    assert set(tenant.get(SECRET, endpoint_id=created["id"]).json) == {"secret"}


def test_rotate_key_reseals_every_secret_under_the_new_key_and_is_idempotent(
    tenant: Api,
    create_endpoint: CreateEndpoint,
    make_api: Callable[..., Api],
    sqlite_settings: Settings,
) -> None:
    first, second = create_endpoint(), create_endpoint(headers={"X-Token": "sealed-2"})
    tenant.post(ROTATE, {"grace_period_s": 600}, endpoint_id=second["id"])
    rotated = tenant.get(SECRET, endpoint_id=second["id"]).json
    legacy = {"X-Token": "legacy-1"}  # from before headers were sealed
    Endpoint.update(secret=first["secret"], headers=legacy).where(
        Endpoint.id == first["id"]
    ).execute()
    channels = {"pagerduty_routing_key": "pd-legacy", "email_to": ["ops@example.com"]}
    tenant_id = Endpoint.get_by_id(first["id"]).tenant_id
    Tenant.update(alert_channels=channels).where(Tenant.id == tenant_id).execute()
    client = new_client(tenant, ["endpoints:read"])
    assert token_for(tenant, client).status_code == 200, "a signing key, sealed"
    new_key = secretbox.generate_key()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
        "HOOKLINE_DATA_DIR": sqlite_settings.data_dir,
        "HOOKLINE_SECRET_KEY": new_key,
        "HOOKLINE_SECRET_KEY_PREVIOUS": SECRET_KEY,
        "HOOKLINE_LOG_FORMAT": "json",
    }

    def rotate_key() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "secrets", "rotate-key", "--batch", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    report, again = rotate_key(), rotate_key()

    assert report["key_id"] == secretbox.key_id(secretbox.parse_key(new_key))
    assert (report["endpoints"], report["resealed"], report["legacy_plaintext"]) == (2, 3, 1)
    assert (again["resealed"], again["already_current"]) == (0, 3)
    assert (report["headers_resealed"], report["headers_legacy_plaintext"]) == (2, 1)
    assert (report["tenants"], report["alert_channels_resealed"]) == (1, 1)
    assert report["alert_channels_legacy_plaintext"] == 1
    assert (again["headers_resealed"], again["alert_channels_resealed"]) == (0, 0)
    new_only = secretbox.SecretBox(secretbox.parse_key(new_key))
    rows = {row.id: row for row in Endpoint.select()}
    assert sealed_fields.open_headers(rows[first["id"]].headers, new_only, first["id"]) == legacy
    assert sealed_fields.open_headers(rows[second["id"]].headers, new_only, second["id"]) == {
        "X-Token": "sealed-2"
    }
    stored = Tenant.get_by_id(tenant_id).alert_channels
    assert "pd-legacy" not in json.dumps(stored)
    assert sealed_fields.open_channels(stored, new_only, tenant_id) == channels
    only_new = make_api(sqlite_settings.with_overrides(secret_key=new_key)).as_key(tenant.key)
    assert only_new.get(SECRET, endpoint_id=first["id"]).json == {"secret": first["secret"]}
    assert only_new.get(SECRET, endpoint_id=second["id"]).json == rotated
    assert (report["oauth_keys_resealed"], again["oauth_keys_resealed"]) == (1, 0)
    token = token_for(only_new, client).json["access_token"]
    assert only_new.as_key(token).get("/v1/endpoints").status_code == 200, "it signs still"
