"""An OAuth2/OIDC identity provider's signing keys, fetched from its JWKS URL and cached.

The URL is `HOOKLINE_OAUTH2_JWKS_URL`, or the `jwks_uri` of the issuer's discovery
document (`<issuer>/.well-known/openid-configuration`), found on first use. Keys are
kept `KEYS_TTL_S`; a token whose `kid` is not among them refetches at once, at most
once per `REFETCH_S` per process, so the provider's key rotation needs no restart and a
flood of made-up `kid`s costs the provider one request every 30 s. A provider that
cannot be reached leaves the cached keys in use, is logged, and is asked again at most
every `RETRY_S`. Fetches are blocking:
the API verifies tokens on its offload threads, never on the event loop.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import structlog

log = structlog.get_logger("hookline.api")

REFETCH_S = 30.0  # least time between two fetches on an unknown `kid`
RETRY_S = 5.0  # least time between a failed fetch and the next (a provider down)
KEYS_TTL_S = 600.0  # keys older than this are fetched again on next use
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 1 << 20
# Only asymmetric keys are taken from a provider: a JWKS is public.
KEY_TYPES = ("RSA", "EC")

Fetch = Callable[[str], Any]


class KeysUnavailable(Exception):
    """The provider's keys could not be fetched, and none are cached."""


@dataclass(frozen=True)
class ProviderKey:
    """One of the provider's public keys, by its `kid` (None when it has none)."""

    kid: str | None
    key: Any


def fetch_json(url: str) -> Any:
    """GET `url` and parse its JSON body (at most 1 MiB, within `FETCH_TIMEOUT_S`)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:
        body = answer.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


def discovery_url(issuer: str) -> str:
    """Where an OIDC issuer publishes its configuration."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_jwks(document: Any) -> list[ProviderKey]:
    """The RSA and EC public keys of a JWKS document; others (and private parts) skipped.

    Raises:
        ValueError: the document is not a JWKS, or holds no usable key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS: no 'keys' list")
    keys = []
    for entry in document["keys"]:
        usable = isinstance(entry, dict) and entry.get("kty") in KEY_TYPES and "d" not in entry
        if not usable or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(ProviderKey(entry.get("kid"), jwt.PyJWK(entry).key))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            log.warning("oauth2_key_skipped", kid=str(entry.get("kid"))[:64])
    if not keys:
        raise ValueError("the JWKS holds no RSA or EC signing key")
    return keys


class ProviderKeys:
    """The provider's keys, fetched on first use and again as the module describes."""

    def __init__(
        self,
        *,
        issuer: str | None,
        jwks_url: str | None,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer and not jwks_url:
            raise ValueError("an issuer or a JWKS URL is needed")
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[ProviderKey] | None = None
        self._failed_at: float | None = None  # the last fetch, when it failed
        self._refetched_at: float | None = None  # the last one for an unknown `kid`
        self._loaded_at = 0.0

    def keys_for(self, kid: str | None) -> list[ProviderKey]:
        """The keys that may have signed a token with this `kid` (all of them for none).

        Raises:
            KeysUnavailable: nothing is cached and the provider cannot be reached.
        """
        with self._lock:
            now = self._clock()
            if self._due(now, kid):
                self._refresh(now, kid)
            if self._keys is None:
                raise KeysUnavailable("The identity provider's keys cannot be fetched.")
            return [k for k in self._keys if kid is None or k.kid in (None, kid)]

    def _due(self, now: float, kid: str | None) -> bool:
        """Whether to fetch now: none held, held too long, or a `kid` not among them."""
        if self._failed_at is not None and now - self._failed_at < RETRY_S:
            return False  # a provider down is asked once per RETRY_S, not per request
        if self._keys is None or now - self._loaded_at >= KEYS_TTL_S:
            return True
        unknown = kid is not None and not self._has(kid)
        return unknown and (self._refetched_at is None or now - self._refetched_at >= REFETCH_S)

    def _has(self, kid: str) -> bool:
        return any(k.kid == kid for k in self._keys or ())

    def _refresh(self, now: float, kid: str | None) -> None:
        reason = "first" if self._keys is None else "expired"
        if self._keys is not None and kid is not None and not self._has(kid):
            reason, self._refetched_at = "unknown_kid", now
        try:
            keys = parse_jwks(self._fetch(self._jwks_url()))
        except Exception as exc:  # noqa: BLE001 - a provider down keeps what is cached
            log.warning(
                "oauth2_keys_unreachable",
                reason=reason,
                cached=len(self._keys or ()),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            self._failed_at = now
            return
        self._keys, self._loaded_at, self._failed_at = keys, now, None
        log.info("oauth2_keys_fetched", reason=reason, kids=[k.kid for k in keys][:20])

    def _jwks_url(self) -> str:
        """The configured JWKS URL, or the one the issuer's discovery document names."""
        if self.jwks_url:
            return self.jwks_url
        assert self.issuer is not None
        document = self._fetch(discovery_url(self.issuer))
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0 §4.3: the document's issuer is the one asked for.
            raise ValueError("the discovery document names another issuer")
        found = document.get("jwks_uri")
        if not isinstance(found, str) or not found.startswith(("https://", "http://")):
            raise ValueError("the discovery document has no jwks_uri")
        if found.startswith("http://") and not self.issuer.startswith("http://"):
            raise ValueError("an https issuer's jwks_uri must be https")
        self.jwks_url = found
        return found
