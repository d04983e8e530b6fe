"""JWT bearer tokens: HS256, RS256, ES256 as configured; forged, stale or confused ones: 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.db.models import ApiKey
from engine.errors import SettingsError
from tests.api.conftest import MakeApi
from tests.api.support import Api, assert_problem
from tests.factories import make_settings

HS_SECRET = "hs256-secret-for-tests-0123456789abcdef"
ENDPOINTS = "/v1/endpoints"
Token = Callable[..., str]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(tenant_id: str, scope: Any = "endpoints:read", **extra: Any) -> dict[str, Any]:
    return {"tenant": tenant_id, "scope": scope, "exp": int(time.time()) + 300, **extra}


def unsigned(payload: dict[str, Any], header: dict[str, Any]) -> str:
    """A token with a hand-made header and no signature, for the tokens pyjwt will not make."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """HS256 over any bytes as the secret, even a public key that pyjwt refuses to use."""
    head = unsigned(payload, {"alg": "HS256", "typ": "JWT"})[:-1]
    signature = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return f"{head}.{b64(signature)}"


@pytest.fixture
def tenant_id(tenant: Api) -> str:
    [key] = tenant.get("/v1/keys").json["data"]
    return str(ApiKey.get_by_id(key["id"]).tenant_id)


@pytest.fixture
def key_files(tmp_path: Path, rsa_key: Any, ec_key: Any) -> dict[str, str]:
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(public_pem(rsa_key))
    jwks = tmp_path / "jwks.json"
    entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwks.write_text(json.dumps({"keys": [{**entry, "kid": "ec-1", "use": "sig"}]}))
    return {"pem": str(pem), "jwks": str(jwks)}


@pytest.fixture
def jwt_api(
    make_api: MakeApi, sqlite_settings: Any, key_files: dict[str, str]
) -> Callable[..., Api]:
    """The app with JWTs configured: every key by default; overrides replace settings."""

    def make(**overrides: str) -> Api:
        env = {
            "HOOKLINE_DATA_DIR": sqlite_settings.data_dir,
            "HOOKLINE_JWT_HS256_SECRET": HS_SECRET,
            "HOOKLINE_JWT_PUBLIC_KEY_FILE": key_files["pem"],
            "HOOKLINE_JWT_JWKS_FILE": key_files["jwks"],
            **overrides,
        }
        return make_api(make_settings(**{k: v for k, v in env.items() if v is not None}))

    return make


def call(api: Api, token: str, method: str = "GET") -> Any:
    return api.call(method, ENDPOINTS, doc={"url": "https://example.com/h"}, auth=f"Bearer {token}")


def test_an_hs256_token_names_the_tenant_and_its_scopes(jwt_api: Any, tenant_id: str) -> None:
    api = jwt_api()
    token = jwt.encode(claims(tenant_id), HS_SECRET, algorithm="HS256")

    assert call(api, token).status_code == 200
    assert "endpoints:write" in assert_problem(call(api, token, "POST"), 403)["detail"]


def test_an_rs256_token_checks_against_the_pem_key(
    jwt_api: Any, tenant_id: str, rsa_key: Any
) -> None:
    token = jwt.encode(claims(tenant_id, "endpoints:write"), rsa_key, algorithm="RS256")

    assert call(jwt_api(), token, "POST").status_code == 201


def test_an_es256_token_checks_against_the_jwks_key_by_kid(
    jwt_api: Any, tenant_id: str, ec_key: Any
) -> None:
    good = jwt.encode(claims(tenant_id), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    unknown_kid = jwt.encode(claims(tenant_id), ec_key, algorithm="ES256", headers={"kid": "x"})

    assert call(jwt_api(), good).status_code == 200
    assert_problem(call(jwt_api(), unknown_kid), 401)


def test_scopes_may_be_a_list_and_unknown_ones_are_ignored(jwt_api: Any, tenant_id: str) -> None:
    token = jwt.encode(
        claims(tenant_id, ["endpoints:read", "admin:everything"]), HS_SECRET, algorithm="HS256"
    )

    assert call(jwt_api(), token).status_code == 200
    assert_problem(call(jwt_api(), token, "POST"), 403)


def test_the_tenant_and_scope_claims_are_configurable(jwt_api: Any, tenant_id: str) -> None:
    api = jwt_api(HOOKLINE_JWT_TENANT_CLAIM="org", HOOKLINE_JWT_SCOPE_CLAIM="permissions")
    payload = {"org": tenant_id, "permissions": "endpoints:read", "exp": int(time.time()) + 60}

    assert call(api, jwt.encode(payload, HS_SECRET, algorithm="HS256")).status_code == 200
    assert_problem(call(api, jwt.encode(claims(tenant_id), HS_SECRET, algorithm="HS256")), 401)


def test_api_keys_still_work_beside_tokens(jwt_api: Any, tenant: Api) -> None:
    api = jwt_api()

    assert api.get(ENDPOINTS, auth=f"Bearer {tenant.key}").status_code == 200


def resegment(token: str, *, header: Any = None, payload: Any = None) -> str:
    """The same signature under another header or payload: what a forger would send."""
    parts = token.split(".")
    if header is not None:
        parts[0] = b64(json.dumps(header).encode())
    if payload is not None:
        parts[1] = b64(json.dumps(payload).encode())
    return ".".join(parts)


def refused(case: str, tenant_id: str, rsa_key: Any, ec_key: Any) -> str:
    now = int(time.time())

    def hs(payload: dict[str, Any]) -> str:
        return jwt.encode(payload, HS_SECRET, algorithm="HS256")

    tokens: dict[str, Callable[[], str]] = {
        "alg-none": lambda: unsigned(claims(tenant_id), {"alg": "none", "typ": "JWT"}),
        "alg-none-uppercase": lambda: unsigned(claims(tenant_id), {"alg": "NONE"}),
        "hs256-signed-with-the-rsa-public-key": lambda: hs256_with(
            public_pem(rsa_key), claims(tenant_id)
        ),
        "hs256-with-another-secret": lambda: jwt.encode(
            claims(tenant_id), "another-secret-of-at-least-32-bytes!!", algorithm="HS256"
        ),
        "rs256-with-another-key": lambda: jwt.encode(
            claims(tenant_id), rsa.generate_private_key(65537, 2048), algorithm="RS256"
        ),
        "es256-signature-under-an-rs256-header": lambda: resegment(
            jwt.encode(claims(tenant_id), ec_key, algorithm="ES256"), header={"alg": "RS256"}
        ),
        "tampered-payload": lambda: resegment(
            hs(claims(tenant_id)), payload=claims(tenant_id, "keys:manage")
        ),
        "expired": lambda: hs(claims(tenant_id, exp=now - 120)),
        "not-yet-valid": lambda: hs(claims(tenant_id, nbf=now + 600)),
        "without-exp": lambda: hs({"tenant": tenant_id, "scope": "endpoints:read"}),
        "unknown-tenant": lambda: hs(claims("ten_01ARZ3NDEKTSV4RRFFQ69G5FAV")),
        "without-tenant": lambda: hs({"scope": "endpoints:read", "exp": now + 60}),
        "audience-nobody-configured": lambda: hs(claims(tenant_id, aud="someone")),
        # 37 of 43 signature characters: never valid base64url, whatever the signature.
        "truncated-signature": lambda: hs(claims(tenant_id))[:-6],
        "not-a-jwt": lambda: "eyJhbGciOi.not.a-token",
        "unsupported-alg": lambda: jwt.encode(claims(tenant_id), HS_SECRET * 2, algorithm="HS512"),
    }
    return tokens[case]()


# Each bad token, and the reason the 401 must give: refused for the right cause.
REFUSED = {
    "alg-none": "'none' are not accepted",
    "alg-none-uppercase": "'NONE' are not accepted",
    "hs256-signed-with-the-rsa-public-key": "signature does not verify",
    "hs256-with-another-secret": "signature does not verify",
    "rs256-with-another-key": "signature does not verify",
    "es256-signature-under-an-rs256-header": "signature does not verify",
    "tampered-payload": "signature does not verify",
    "expired": "has expired",
    "not-yet-valid": "not valid yet",
    "without-exp": "lacks the 'exp' claim",
    "unknown-tenant": "tenant that does not exist",
    "without-tenant": "no 'tenant' claim",
    "audience-nobody-configured": "audience is not accepted",
    "truncated-signature": "not a JWT",
    "not-a-jwt": "not a JWT",
    "unsupported-alg": "'HS512' are not accepted",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_token_is_401_problem_json(
    jwt_api: Any, tenant_id: str, rsa_key: Any, ec_key: Any, case: str
) -> None:
    token = refused(case, tenant_id, rsa_key, ec_key)

    problem = assert_problem(call(jwt_api(), token), 401, "Authorization")

    assert problem["type"] == "urn:hookline:problem:unauthorized"
    assert REFUSED[case] in problem["detail"]
    assert token not in problem["detail"]


def test_algorithm_confusion_is_refused_when_only_rsa_is_configured(
    jwt_api: Any, tenant_id: str, rsa_key: Any
) -> None:
    api = jwt_api(HOOKLINE_JWT_HS256_SECRET=None, HOOKLINE_JWT_JWKS_FILE=None)
    confused = hs256_with(public_pem(rsa_key), claims(tenant_id))
    honest = jwt.encode(claims(tenant_id), rsa_key, algorithm="RS256")

    assert "HS256" in assert_problem(call(api, confused), 401)["detail"]
    assert call(api, honest).status_code == 200


def test_an_algorithm_left_out_of_the_setting_is_refused(
    jwt_api: Any, tenant_id: str, rsa_key: Any
) -> None:
    api = jwt_api(HOOKLINE_JWT_ALGORITHMS="RS256")

    assert_problem(call(api, jwt.encode(claims(tenant_id), HS_SECRET, algorithm="HS256")), 401)
    assert call(api, jwt.encode(claims(tenant_id), rsa_key, algorithm="RS256")).status_code == 200


def test_issuer_and_audience_are_checked_when_configured(jwt_api: Any, tenant_id: str) -> None:
    api = jwt_api(HOOKLINE_JWT_ISSUER="https://idp.example", HOOKLINE_JWT_AUDIENCE="hookline")

    def token(**extra: Any) -> str:
        return jwt.encode(claims(tenant_id, **extra), HS_SECRET, algorithm="HS256")

    assert call(api, token(iss="https://idp.example", aud="hookline")).status_code == 200
    assert_problem(call(api, token(iss="https://evil.example", aud="hookline")), 401)
    assert_problem(call(api, token(iss="https://idp.example", aud="other")), 401)
    assert_problem(call(api, token(aud="hookline")), 401)
    assert_problem(call(api, token(iss="https://idp.example")), 401)


def test_tokens_are_refused_as_keys_when_no_jwt_is_configured(
    make_api: MakeApi, tenant_id: str
) -> None:
    token = jwt.encode(claims(tenant_id), HS_SECRET, algorithm="HS256")

    assert_problem(call(make_api(), token), 401)


@pytest.mark.parametrize("content", ["not a key", '{"keys": []}', '{"keys": [{"kty": "oct"}]}'])
def test_a_key_file_without_a_public_key_stops_the_app(
    make_api: MakeApi, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    variable = (
        "HOOKLINE_JWT_JWKS_FILE" if content.startswith("{") else "HOOKLINE_JWT_PUBLIC_KEY_FILE"
    )

    with pytest.raises(SettingsError) as caught:
        make_api(make_settings(**{variable: str(path)}))
    assert caught.value.variable == variable


def test_a_change_made_with_a_token_is_audited_with_its_subject(
    jwt_api: Any, tenant_id: str
) -> None:
    api = jwt_api()
    token = jwt.encode(
        claims(tenant_id, "endpoints:write audit:read", sub="ops@example.com"),
        HS_SECRET,
        algorithm="HS256",
    )
    assert call(api, token, "POST").status_code == 201

    entries = api.get("/v1/audit-log", auth=f"Bearer {token}").json["data"]
    [entry] = [e for e in entries if e["action"] == "POST /v1/endpoints"]
    assert entry["actor"]["kind"] == "jwt"
    assert entry["actor"]["subject"] == "ops@example.com"
    assert entry["actor"]["id"].startswith("jwt_")
