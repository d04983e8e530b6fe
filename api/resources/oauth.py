"""Hookline's OAuth2 authorization server: `/oauth/token`, `/oauth/introspect`,
`/oauth/revoke` and `/.well-known/jwks.json` (`engine.tenancy.oauth`).

The token endpoint grants client credentials only (RFC 6749 §4.4). A client
authenticates with HTTP Basic or with `client_id` and `client_secret` in the form
(not both). Errors are RFC 6749 §5.2's JSON, not problem+json, with `Cache-Control:
no-store`. Requests are limited per client and per source address
(`HOOKLINE_OAUTH2_TOKEN_REQUESTS_PER_MIN` each, per API process): past it, 429
`slow_down` with `Retry-After`. Introspection (RFC 7662) and revocation (RFC 7009)
take the same client authentication and see only the calling client's own tokens.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import falcon
import jwt

from api.auth_failures import FailedAuth
from api.tokens import TokenVerifier
from engine.db.models import OAuthClient
from engine.secretbox import SecretBox
from engine.settings import Settings
from engine.tenancy import oauth
from engine.tenancy.credentials import Principal

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.headers = headers or {}


def _answer(resp: falcon.Response, status: int, body: dict[str, Any], **headers: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)
    resp.set_headers({**NO_STORE, **headers})


class OAuthServer:
    """The token, introspection and revocation endpoints (suffixes `token`, `introspect`,
    `revoke`); each answers its own errors."""

    auth = None  # clients authenticate in the form or with HTTP Basic, not a bearer token

    def __init__(
        self, settings: Settings, box: SecretBox, tokens: TokenVerifier | None = None
    ) -> None:
        self.settings = settings
        self.box = box
        self.tokens = tokens or TokenVerifier(settings)
        self.issuer = self.tokens.own.issuer
        per_min = settings.oauth2_token_requests_per_min
        proxies = settings.trusted_proxies
        self._by_address = FailedAuth(per_min, trusted_proxies=proxies)
        self._by_client = FailedAuth(per_min)
        self._lock = threading.Lock()  # the buckets are used from the offload's threads

    def on_post_token(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(req, resp, self._token)

    def on_post_introspect(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(req, resp, self._introspect)

    def on_post_revoke(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(req, resp, self._revoke)

    def _serve(self, req: falcon.Request, resp: falcon.Response, handler: Any) -> None:
        try:
            form = _form(req)
            self._spend(self._by_address, self._by_address.address(req))
            client = self._client(req, form)
            self._spend(self._by_client, client.id)
            # Who made the change, for the audit log (`api.audit`): a revocation is recorded.
            req.context.principal = Principal(
                client.tenant_id, client.id, frozenset(client.scopes), subject=client.id
            )
            body = handler(req, client, form)
        except OAuthError as exc:
            failure = {"error": exc.error, "error_description": exc.description}
            _answer(resp, exc.status, failure, **exc.headers)
            return
        _answer(resp, 200, body)

    def _spend(self, buckets: FailedAuth, key: str) -> None:
        with self._lock:
            wait = buckets.retry_after(key)
            if wait is None:
                buckets.failed(key)  # every request spends, not only failed ones
        if wait is not None:
            raise OAuthError(
                429,
                "slow_down",
                f"Too many token requests; retry after {wait} s.",
                {"Retry-After": str(wait)},
            )

    def _client(self, req: falcon.Request, form: dict[str, str]) -> OAuthClient:
        """The authenticated client (RFC 6749 §2.3.1: Basic, or the form, not both)."""
        basic = _basic(req)
        in_form = "client_id" in form or "client_secret" in form
        if basic is not None and in_form:
            raise OAuthError(400, "invalid_request", "Authenticate with one method, not two.")
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client = oauth.authenticate_client(client_id, secret) if client_id and secret else None
        if client is None:
            challenge = {"WWW-Authenticate": 'Basic realm="hookline"'}
            raise OAuthError(401, "invalid_client", "Client authentication failed.", challenge)
        return client

    def _token(
        self, req: falcon.Request, client: OAuthClient, form: dict[str, str]
    ) -> dict[str, Any]:
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is required.")
        if grant != "client_credentials":
            raise OAuthError(
                400, "unsupported_grant_type", "Only client_credentials is granted here."
            )
        scopes = oauth.granted(client, form.get("scope"))
        if scopes is None:
            raise OAuthError(400, "invalid_scope", "A requested scope is not the client's.")
        issued = oauth.issue(
            client,
            scopes,
            box=self.box,
            issuer=self.issuer,
            ttl_s=self.settings.oauth2_token_ttl_s,
        )
        return {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.scopes),
        }

    def _own_token(
        self, client: OAuthClient, form: dict[str, str], *, live: bool
    ) -> dict[str, Any] | None:
        """The claims of the form's `token` if it is one of this client's, else None."""
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "token is required.")
        try:
            header = jwt.get_unverified_header(token)
            payload = self.tokens.own.decode(token, header.get("kid"), check_live=live)
        except jwt.PyJWTError:
            return None
        return payload if payload.get("client_id") == client.id else None

    def _introspect(
        self, req: falcon.Request, client: OAuthClient, form: dict[str, str]
    ) -> dict[str, Any]:
        payload = self._own_token(client, form, live=True)
        if payload is None:
            return {"active": False}
        shown = ("scope", "client_id", "exp", "iat", "sub", "aud", "iss", "jti", "tenant_id")
        return {"active": True, "token_type": "Bearer", **{k: payload[k] for k in shown}}

    def _revoke(
        self, req: falcon.Request, client: OAuthClient, form: dict[str, str]
    ) -> dict[str, Any]:
        payload = self._own_token(client, form, live=False)
        if payload is not None:  # RFC 7009 §2.2: an unknown token is not an error
            expires = dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC).replace(tzinfo=None)
            oauth.revoke(str(payload["jti"]), client.tenant_id, client.id, expires)
        req.context.audit_params = {"token": payload["jti"] if payload else "unknown"}
        return {}


class Jwks:
    """`GET /.well-known/jwks.json`: the public keys of Hookline's access tokens."""

    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = oauth.public_jwks()
        resp.set_header("Cache-Control", "public, max-age=60")


def _form(req: falcon.Request) -> dict[str, str]:
    """The form body's parameters; each may appear once (RFC 6749 §3.2)."""
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise OAuthError(400, "invalid_request", f"Send the body as {FORM}.")
    raw: bytes = getattr(req.context, "body", b"") or b""
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "The form is not valid UTF-8.") from None
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise OAuthError(400, "invalid_request", f"{repeated[0]} is given more than once.")
    return {name: values[0] for name, values in parsed.items()}


def _basic(req: falcon.Request) -> tuple[str, str] | None:
    """HTTP Basic credentials, each form-decoded (RFC 6749 §2.3.1), or None."""
    header = req.get_header("Authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(400, "invalid_request", "The Basic credentials are malformed.") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError(400, "invalid_request", "The Basic credentials are malformed.")
    return unquote_plus(client_id), unquote_plus(secret)
