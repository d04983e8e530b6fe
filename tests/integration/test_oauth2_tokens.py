"""Tokens of an OAuth2/OIDC identity provider, and Hookline's own, on the real API process.

The provider is the test's own: a small HTTP server on loopback that serves OIDC
discovery and a JWKS, and rotates its signing key mid-test.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.conftest import Api
from tests.integration.faults import isolated_stack
from tests.integration.test_tenant_lifecycle import new_tenant

# The API never publishes here: nothing to run once per queue type.
# Issue 19 §1 (an identity provider's tokens) and §2 (Hookline's own).
pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]

AUDIENCE = "hookline-api"


class Provider:
    """An identity provider on loopback: discovery, a JWKS, and a key that rotates."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.asked: list[str] = []
        self.up = True
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.asked.append(self.path)
                if not provider.up:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [provider.jwk(kid) for kid in provider.keys]}
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"

    def rotate(self, kid: str) -> None:
        """Publish a new key in place of the old ones."""
        self.keys = {kid: ec.generate_private_key(ec.SECP256R1())}

    def jwk(self, kid: str) -> dict[str, Any]:
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.keys[kid].public_key())
        return {**json.loads(public), "kid": kid, "use": "sig", "alg": "ES256"}

    def token(self, kid: str, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        signing = key if key is not None else self.keys[kid]
        return jwt.encode(payload, signing, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    running = Provider()
    running.rotate("key-1")
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


def get_endpoints(api: Api, token: str) -> tuple[int, Any, dict[str, str]]:
    status, body = api.call("GET", "/v1/endpoints", key=token)
    return status, body, api.last_headers


def test_a_providers_tokens_are_accepted_through_a_key_rotation_without_a_restart(
    tmp_path: Path, provider: Provider
) -> None:
    env = {"HOOKLINE_OAUTH2_ISSUER": provider.issuer, "HOOKLINE_OAUTH2_AUDIENCE": AUDIENCE}
    with isolated_stack(tmp_path, roles=("api",), **env) as (api, _processes, _pg, _vhost):
        tenant_id, _key = new_tenant(api, "oidc")
        scoped = {"tenant_id": tenant_id, "scope": "endpoints:read openid", "sub": "svc-1"}

        first = get_endpoints(api, provider.token("key-1", **scoped))
        asked_at_first = list(provider.asked)
        old_key = provider.keys["key-1"]
        provider.rotate("key-2")  # the provider moves to a new key, Hookline keeps running
        rotated = get_endpoints(api, provider.token("key-2", **scoped))
        retired = get_endpoints(api, provider.token("key-1", key=old_key, **scoped))
        unscoped = get_endpoints(
            api, provider.token("key-2", tenant_id=tenant_id, scp=["events:write"])
        )
        wrong_audience = get_endpoints(api, provider.token("key-2", **scoped, aud="other"))
        forged = get_endpoints(
            api, provider.token("key-2", key=ec.generate_private_key(ec.SECP256R1()), **scoped)
        )
        asked_before_flood = len(provider.asked)
        flood = [
            get_endpoints(api, provider.token(f"made-up-{n}", key=old_key, **scoped))[0]
            for n in range(10)
        ]
        provider.up = False  # down: the cached keys still serve
        while_down = get_endpoints(api, provider.token("key-2", **scoped))

    assert first[0] == 200, first[1]
    assert asked_at_first == ["/.well-known/openid-configuration", "/jwks"], "discovery"
    assert rotated[0] == 200, ("an unknown kid refetches the keys", rotated[1])
    assert retired[0] == 401 and retired[1]["type"].endswith(":unauthorized"), retired[1]
    assert unscoped[0] == 403, unscoped[1]
    assert 'error="insufficient_scope"' in unscoped[2]["www-authenticate"]
    assert 'scope="endpoints:read"' in unscoped[2]["www-authenticate"]
    assert wrong_audience[0] == 401 and "audience" in wrong_audience[1]["detail"]
    assert forged[0] == 401 and "signature" in forged[1]["detail"]
    assert flood == [401] * 10
    assert len(provider.asked) - asked_before_flood <= 1, "at most one refetch per 30 s"
    assert while_down[0] == 200, while_down[1]


def test_without_any_key_from_the_provider_a_token_is_503_not_401(
    tmp_path: Path, provider: Provider
) -> None:
    provider.up = False
    env = {
        "HOOKLINE_OAUTH2_JWKS_URL": provider.issuer + "/jwks",
        "HOOKLINE_OAUTH2_AUDIENCE": AUDIENCE,
        "HOOKLINE_OAUTH2_TENANT_CLAIM": "org",
    }
    with isolated_stack(tmp_path, roles=("api",), **env) as (api, _processes, _pg, _vhost):
        tenant_id, _key = new_tenant(api, "oidc-down")
        token = provider.token("key-1", org=tenant_id, scope="endpoints:read")
        down = get_endpoints(api, token)
        provider.up = True
        time.sleep(5.5)  # a failed fetch is retried after 5 s (`api.jwks.RETRY_S`)
        back = get_endpoints(api, token)

    assert down[0] == 503, down[1]
    assert down[1]["type"].endswith(":identity-provider-unavailable")
    assert down[2]["retry-after"] == "30"
    assert back[0] == 200, ("the tenant from HOOKLINE_OAUTH2_TENANT_CLAIM", back[1])


def test_hookline_issues_tokens_and_a_revocation_holds_on_every_api_process(
    tmp_path: Path,
) -> None:
    """Issue 19 §2 on the real API, two worker processes: each keeps its own caches."""
    with isolated_stack(tmp_path, roles=("api",), HOOKLINE_API_WORKERS="2") as (api, *_rest):
        _tenant_id, key = new_tenant(api, "machines")
        status, client = api.call(
            "POST", "/v1/oauth-clients", {"name": "etl", "scopes": ["endpoints:read"]}, key=key
        )
        assert status == 201, client
        credentials = {"client_id": client["client_id"], "client_secret": client["client_secret"]}

        def post_form(path: str, **fields: str) -> tuple[int, Any]:
            body = urllib.parse.urlencode({**credentials, **fields}).encode()
            request = urllib.request.Request(api.base_url + path, data=body, method="POST")
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, issued = post_form("/oauth/token", grant_type="client_credentials")
        assert status == 200, issued
        token = issued["access_token"]
        before = [get_endpoints(api, token)[0] for _ in range(10)]  # both processes, cached
        jwks = api.call("GET", "/.well-known/jwks.json")[1]
        revoked = post_form("/oauth/revoke", token=token)
        time.sleep(2.5)  # a verdict is kept 2 s (`api.own_tokens.LIVE_TTL_S`)
        after = [get_endpoints(api, token)[0] for _ in range(10)]
        introspected = post_form("/oauth/introspect", token=token)

    assert before == [200] * 10
    assert jwt.get_unverified_header(token)["kid"] in [k["kid"] for k in jwks["keys"]]
    assert revoked == (200, {})
    assert after == [401] * 10, "refused on every process within a few seconds"
    assert introspected == (200, {"active": False})
