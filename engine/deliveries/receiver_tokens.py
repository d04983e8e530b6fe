"""What a delivery needs to prove itself to its receiver: OAuth2 tokens and TLS contexts.

`ReceiverTokens` fetches an endpoint's token from its receiver's token server (RFC 6749
§4.4, the client authenticated with HTTP Basic) through the delivery session, so the
token URL passes the same SSRF guard, and keeps it per grant in this worker process
until `EARLY_S` before it expires. Concurrent deliveries to one endpoint wait for one
fetch. `TlsContexts` builds, once per certificate, the SSL context that presents an
endpoint's client certificate and trusts its CA bundle (or the system's roots); the key
is loaded from an anonymous in-memory file, never written to disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import aiohttp

from engine.endpoints.receiver_auth import ClientTls, OAuth2Grant
from engine.errors import EngineError
from engine.ssrf import AddressPolicy, check_url

EARLY_S = 60.0  # a token is fetched anew this long before it expires
DEFAULT_TTL_S = 300.0  # when the token server names no `expires_in`
MAX_TOKEN_BYTES = 64 * 1024
MAX_CACHED = 1024


class ReceiverAuthError(EngineError):
    """The receiver's token server did not give a token; the message says why."""


class ReceiverTokens:
    """Per-process cache of receivers' OAuth2 access tokens, by grant."""

    def __init__(
        self, session: aiohttp.ClientSession, policy: AddressPolicy, timeout_s: float
    ) -> None:
        self.session = session
        self.policy = policy
        self.timeout_s = timeout_s
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def token(self, grant: OAuth2Grant, *, fresh: bool = False) -> str:
        """A live token for the grant: the cached one, or one fetched now.

        Raises:
            ReceiverAuthError: the token server refused, failed or answered nonsense.
        """
        key = grant.cache_key
        if fresh:
            self._tokens.pop(key, None)
        cached = self._live(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch for all the deliveries waiting on this grant
            cached = self._live(key)
            if cached is not None:
                return cached
            token, ttl_s = await self._fetch(grant)
            self._tokens[key] = (token, time.monotonic() + max(ttl_s - EARLY_S, ttl_s / 2))
            while len(self._tokens) > MAX_CACHED:
                self._tokens.popitem(last=False)
            return token

    def _live(self, key: str) -> str | None:
        found = self._tokens.get(key)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def _fetch(self, grant: OAuth2Grant) -> tuple[str, float]:
        refusal = check_url(grant.token_url, self.policy)
        if refusal is not None:
            raise ReceiverAuthError(f"token_url: {refusal}")
        form = {"grant_type": "client_credentials"}
        form.update({k: v for k, v in (("scope", grant.scope), ("audience", grant.audience)) if v})
        # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encodes them.
        auth = aiohttp.BasicAuth(
            quote(grant.client_id, safe=""), quote(grant.client_secret, safe="")
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.session.post(
                    grant.token_url, data=form, auth=auth, allow_redirects=False
                ) as answer:
                    raw = await answer.content.read(MAX_TOKEN_BYTES)
                    status = answer.status
        except TimeoutError:
            raise ReceiverAuthError(
                f"token server: no answer within {self.timeout_s:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ReceiverAuthError(f"token server: {type(exc).__name__}: {exc}") from None
        return _parse(status, raw)


def _parse(status: int, raw: bytes) -> tuple[str, float]:
    """The access token and its lifetime in a token server's answer."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        raise ReceiverAuthError(
            f"token server answered HTTP {status}" + (f" {error}" if error else "")
        )
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ReceiverAuthError("token server answered no access_token")
    if str(body.get("token_type", "bearer")).lower() != "bearer":
        raise ReceiverAuthError(f"token server answered token_type {body.get('token_type')!r}")
    expires = body.get("expires_in")
    ttl_s = float(expires) if isinstance(expires, int | float) and expires > 0 else DEFAULT_TTL_S
    return body["access_token"], ttl_s


class TlsContexts:
    """SSL contexts presenting endpoints' client certificates, built once each."""

    def __init__(self) -> None:
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    def context(self, tls: ClientTls) -> ssl.SSLContext:
        """The context for this certificate, key and CA bundle.

        Raises:
            ssl.SSLError: the material does not load (it was checked when saved).
        """
        key = tls.cache_key
        found = self._contexts.get(key)
        if found is None:
            found = _build(tls)
            self._contexts[key] = found
            while len(self._contexts) > MAX_CACHED:
                self._contexts.popitem(last=False)
        self._contexts.move_to_end(key)
        return found


def _build(tls: ClientTls) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=tls.ca_bundle or None)
    cert_fd = os.memfd_create("hookline-client-cert")
    key_fd = os.memfd_create("hookline-client-key")
    try:
        os.write(cert_fd, tls.certificate.encode())
        os.write(key_fd, tls.key.encode())
        context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
    finally:
        os.close(cert_fd)
        os.close(key_fd)
    return context
