"""Hookline's own access tokens (`engine.tenancy.oauth`), accepted on every `/v1/` route.

A token whose `iss` is this Hookline's (`HOOKLINE_PUBLIC_URL`, or the bind address) is
checked against the signing keys in the database: read once, and again when a token
names a `kid` this process has not seen (a key another process just made), at most
once a second. Then it must be live: neither revoked nor of a deleted client. That
verdict is kept `LIVE_TTL_S` per token, so a revocation holds on every process of
every host within that time, at one query per token and interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from engine.tenancy import oauth

LIVE_TTL_S = 2.0
KEYS_REFETCH_S = 1.0
_MAX_REMEMBERED = 10_000


class OwnTokens:
    """Checks the tokens Hookline issued; answers their payload (see the module)."""

    def __init__(self, issuer: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._keys_read_at: float | None = None
        self._live: dict[str, tuple[float, bool]] = {}

    def takes(self, unverified_iss: Any) -> bool:
        return unverified_iss == self.issuer

    def decode(self, token: str, kid: Any, *, check_live: bool = True) -> dict[str, Any]:
        """The token's claims, its signature, `iss`, `aud`, `exp` and (unless told not)
        liveness checked.

        Raises:
            jwt.PyJWTError: the token is refused (`InvalidTokenError` when revoked).
        """
        key = self._key(kid if isinstance(kid, str) else "")
        if key is None:
            raise jwt.InvalidSignatureError("unknown kid")
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["ES256"],
            issuer=self.issuer,
            audience=oauth.AUDIENCE,
            options={"require": ["exp", "iat", "jti", "client_id", "tenant_id"]},
        )
        if check_live and not self._is_live(str(payload["jti"]), str(payload["client_id"])):
            raise jwt.InvalidTokenError("revoked")
        return payload

    def _key(self, kid: str) -> Any:
        with self._lock:
            known = self._keys.get(kid)
            now = self._clock()
            due = self._keys_read_at is None or now - self._keys_read_at >= KEYS_REFETCH_S
            if known is None and due:
                self._keys_read_at = now
                self._keys = {
                    entry["kid"]: jwt.PyJWK(entry).key for entry in oauth.public_jwks()["keys"]
                }
                known = self._keys.get(kid)
            return known

    def _is_live(self, jti: str, client_id: str) -> bool:
        now = self._clock()
        with self._lock:
            remembered = self._live.get(jti)
        if remembered is not None and now - remembered[0] < LIVE_TTL_S:
            return remembered[1]
        verdict = oauth.live(jti, client_id)
        with self._lock:
            if len(self._live) >= _MAX_REMEMBERED:
                self._live.clear()
            self._live[jti] = (now, verdict)
        return verdict
