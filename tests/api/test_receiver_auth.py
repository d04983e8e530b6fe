"""An endpoint's `auth` and `tls` (issue 19 §3): checked when saved, sealed at rest, masked
in answers, kept when `"***"` is written back, and sent by the request builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.db.models import Endpoint
from engine.endpoints import receiver_auth
from engine.settings import Settings
from tests.api.support import Api, assert_problem
from tests.tls_certs import Authority

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
HTTPS = "https://example.com/hook"


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority()


def created(tenant: Api, **fields: Any) -> dict[str, Any]:
    result = tenant.post(ENDPOINTS, {"url": HTTPS, **fields})
    assert result.status_code == 201, result.text
    return dict(result.json)


def test_basic_auth_is_sealed_masked_and_kept_when_written_back(tenant: Api) -> None:
    endpoint = created(tenant, auth={"type": "basic", "username": "hook", "password": "s3cret!"})
    stored = Endpoint.get_by_id(endpoint["id"]).receiver_auth
    kept = tenant.patch(
        ENDPOINT,
        {"auth": {"type": "basic", "username": "hook2", "password": "***"}},
        endpoint_id=endpoint["id"],
    ).json
    opened = receiver_auth.opened(
        Endpoint.get_by_id(endpoint["id"]).receiver_auth, *_box_and(endpoint)
    )

    assert endpoint["auth"] == {"type": "basic", "username": "hook", "password": "***"}
    assert endpoint["auth_fingerprints"]["password"].startswith("hmac-sha256:")
    assert "s3cret!" not in str(stored) and "hook" not in str(stored), "sealed whole"
    assert kept["auth"]["username"] == "hook2"
    assert kept["auth_fingerprints"] == endpoint["auth_fingerprints"], "the same password"
    assert opened["auth"] == {"type": "basic", "username": "hook2", "password": "s3cret!"}
    assert (endpoint["tls"], endpoint["tls_fingerprints"]) == (None, None)


def _box_and(endpoint: dict[str, Any]) -> tuple[Any, str]:
    from engine.secretbox import from_settings
    from tests.factories import make_settings

    return from_settings(make_settings()), endpoint["id"]


def test_null_clears_and_a_mask_with_nothing_to_keep_is_422(tenant: Api) -> None:
    endpoint = created(tenant, auth={"type": "bearer", "token": "abc.def"})

    cleared = tenant.patch(ENDPOINT, {"auth": None}, endpoint_id=endpoint["id"]).json
    nothing = tenant.patch(
        ENDPOINT, {"auth": {"type": "bearer", "token": "***"}}, endpoint_id=endpoint["id"]
    )
    other_kind = created(tenant, auth={"type": "bearer", "token": "t"})
    switched = tenant.patch(
        ENDPOINT,
        {"auth": {"type": "basic", "username": "u", "password": "***"}},
        endpoint_id=other_kind["id"],
    )

    assert (cleared["auth"], Endpoint.get_by_id(endpoint["id"]).receiver_auth) == (None, None)
    assert assert_problem(nothing, 422)["field"] == "auth.token"
    assert assert_problem(switched, 422)["field"] == "auth.password"


def test_a_client_certificate_is_checked_when_saved(tenant: Api, authority: Authority) -> None:
    mine, other = authority.issue("hookline-client"), authority.issue("someone-else")

    good = created(
        tenant,
        tls={
            "client_certificate": mine.certificate,
            "client_key": mine.key,
            "ca_bundle": authority.pem,
        },
    )
    mismatched = tenant.post(
        ENDPOINTS,
        {"url": HTTPS, "tls": {"client_certificate": mine.certificate, "client_key": other.key}},
    )
    not_pem = tenant.post(
        ENDPOINTS, {"url": HTTPS, "tls": {"client_certificate": "hello", "client_key": mine.key}}
    )
    bad_bundle = tenant.post(
        ENDPOINTS,
        {
            "url": HTTPS,
            "tls": {
                **{"client_certificate": mine.certificate, "client_key": mine.key},
                "ca_bundle": "x",
            },
        },
    )
    plain_http = tenant.post(
        ENDPOINTS,
        {
            "url": "http://example.com/h",
            "tls": {"client_certificate": mine.certificate, "client_key": mine.key},
        },
    )
    kept = tenant.patch(
        ENDPOINT,
        {"tls": {**good["tls"], "client_key": "***"}},
        endpoint_id=good["id"],
    )

    assert (
        good["tls"]["client_key"] == "***" and good["tls"]["client_certificate"] == mine.certificate
    )
    assert good["tls_fingerprints"]["client_key"].startswith("hmac-sha256:")
    assert assert_problem(mismatched, 422)["field"] == "tls.client_key"
    assert assert_problem(not_pem, 422)["field"] == "tls.client_certificate"
    assert assert_problem(bad_bundle, 422)["field"] == "tls.ca_bundle"
    assert assert_problem(plain_http, 422)["field"] == "tls"
    assert kept.status_code == 200, kept.text
    assert mine.key not in kept.text


def test_a_token_url_the_ssrf_guard_refuses_is_422_at_once(
    make_api: Callable[..., Api], sqlite_settings: Settings, tenant: Api
) -> None:
    """Decided by the guard, before any connection: nothing is dialled."""
    settings = sqlite_settings.with_overrides(dangerous_allow_private_networks=False)
    strict = make_api(settings).as_key(tenant.key)
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": "http://169.254.169.254/token",
        "client_id": "hookline",
        "client_secret": "s",
    }
    refused = strict.post(ENDPOINTS, {"url": HTTPS, "auth": auth})

    assert assert_problem(refused, 422)["field"] == "auth.token_url"


def test_the_request_carries_the_credentials(tenant: Api, authority: Authority) -> None:
    mine = authority.issue("hookline-client")
    box, _ = _box_and({"id": ""})
    basic = receiver_auth.credentials(
        receiver_auth.seal(
            {"type": "basic", "username": "a", "password": "b:c"}, None, box, "ep_1"
        ),
        box,
        "ep_1",
    )
    grant = receiver_auth.credentials(
        receiver_auth.seal(
            {
                "type": "oauth2_client_credentials",
                "token_url": "https://id.example.com/t",
                "client_id": "c",
                "client_secret": "s",
            },
            {"client_certificate": mine.certificate, "client_key": mine.key},
            box,
            "ep_2",
        ),
        box,
        "ep_2",
    )

    assert basic.authorization == "Basic YTpiOmM="
    assert (basic.grant, basic.tls) == (None, None)
    assert grant.authorization is None
    assert grant.grant is not None and grant.grant.client_id == "c"
    assert "grant-secret-42" not in repr(grant.grant), "the secret never in a repr"
    assert grant.tls is not None and mine.key not in repr(grant)
