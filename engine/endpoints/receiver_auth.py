"""How Hookline proves itself to a receiver beyond the signature: `auth` and `tls`.

`auth` is one of `basic` (username, password), `bearer` (token) or
`oauth2_client_credentials` (a token fetched from the receiver's own server, cached per
endpoint and worker process; `engine.deliveries.client`). `tls` is a client certificate
and its key, presented to the receiver (mutual TLS), and optionally a CA bundle that
pins the trust roots for that endpoint. Both are checked when saved (certificates
parse, the key matches, the token URL passes the SSRF guard) and stored in one column
sealed with `HOOKLINE_SECRET_KEY` (`receiver_auth`); answers show each secret as
`"***"` beside a fingerprint, and a `"***"` written back keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.errors import InvalidInputError
from engine.sealed_fields import MASK, SEALED, fingerprint
from engine.secretbox import SecretBox
from engine.ssrf import ALLOW_HINT, REFUSED_ADDRESS_PREFIX, AddressPolicy, check_url

BASIC, BEARER, OAUTH2 = "basic", "bearer", "oauth2_client_credentials"
# The secret field of each: shown as "***", kept when "***" is written back.
AUTH_SECRETS = {BASIC: "password", BEARER: "token", OAUTH2: "client_secret"}
TLS_SECRET = "client_key"


@dataclass(frozen=True)
class OAuth2Grant:
    """What fetches an endpoint's token from its receiver's server."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None

    @property
    def cache_key(self) -> str:
        """Tells grants apart without holding the secret."""
        parts = (self.token_url, self.client_id, self.client_secret, self.scope, self.audience)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class ClientTls:
    """A client certificate and key (PEM), and the CA bundle that pins the receiver's roots."""

    certificate: str
    key: str = field(repr=False)
    ca_bundle: str | None = None

    @property
    def cache_key(self) -> str:
        parts = (self.certificate, self.key, self.ca_bundle)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An endpoint's `auth` and `tls`, opened: what the worker uses."""

    auth: Mapping[str, Any] | None = field(default=None, repr=False)
    tls: ClientTls | None = None

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header of a basic or bearer `auth`."""
        if self.auth is None:
            return None
        if self.auth["type"] == BEARER:
            return f"Bearer {self.auth['token']}"
        if self.auth["type"] == BASIC:
            pair = f"{self.auth['username']}:{self.auth['password']}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        return None

    @property
    def grant(self) -> OAuth2Grant | None:
        if self.auth is None or self.auth["type"] != OAUTH2:
            return None
        a = self.auth
        return OAuth2Grant(
            a["token_url"], a["client_id"], a["client_secret"], a.get("scope"), a.get("audience")
        )


def check(
    auth: Mapping[str, Any] | None, tls: Mapping[str, Any] | None, url: str, policy: AddressPolicy
) -> None:
    """Domain checks of `auth` and `tls` as they will be stored (`written`), for an endpoint
    at `url`, that the JSON Schema cannot express.

    Raises:
        InvalidInputError: names the field refused (`auth.token_url`, `tls.client_key`, ...).
    """
    if auth is not None and auth.get("type") == OAUTH2:
        reason = check_url(auth["token_url"], policy)
        if reason is not None and reason.startswith(REFUSED_ADDRESS_PREFIX):
            reason = f"{reason}; {ALLOW_HINT}"
        if reason is not None:
            raise InvalidInputError("auth.token_url", reason)
    if tls is not None:
        if not url.lower().startswith("https://"):
            raise InvalidInputError("tls", "a client certificate needs an https url")
        _check_pair(tls["client_certificate"], tls["client_key"])
        if tls.get("ca_bundle"):
            try:
                if not x509.load_pem_x509_certificates(tls["ca_bundle"].encode()):
                    raise ValueError("no certificate")
            except ValueError as exc:
                raise InvalidInputError(
                    "tls.ca_bundle", f"is not PEM certificates: {exc}"
                ) from None


def _check_pair(certificate: str, key: str) -> None:
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode())
    except ValueError as exc:
        raise InvalidInputError(
            "tls.client_certificate", f"is not a PEM certificate: {exc}"
        ) from None
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            "tls.client_key", f"is not an unencrypted PEM private key: {exc}"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, public) != cert.public_key().public_bytes(
        der, public
    ):
        raise InvalidInputError("tls.client_key", "does not match the client certificate")


def _purpose(endpoint_id: str) -> str:
    return f"endpoint-receiver-auth:{endpoint_id}"


def seal(
    auth: Mapping[str, Any] | None, tls: Mapping[str, Any] | None, box: SecretBox, endpoint_id: str
) -> dict[str, str] | None:
    """The `Endpoint.receiver_auth` column: both sealed together; None when neither is set."""
    if auth is None and tls is None:
        return None
    plain = json.dumps({"auth": auth, "tls": tls})
    return {SEALED: box.seal(plain, _purpose(endpoint_id))}


def opened(stored: Mapping[str, Any] | None, box: SecretBox, endpoint_id: str) -> dict[str, Any]:
    """`{"auth": ..., "tls": ...}` in plaintext (each None when unset).

    Raises:
        CryptoError: the column does not open with the configured keys.
    """
    if not stored:
        return {"auth": None, "tls": None}
    found: dict[str, Any] = json.loads(box.open(stored[SEALED], _purpose(endpoint_id)))
    return found


def credentials(stored: Mapping[str, Any] | None, box: SecretBox, endpoint_id: str) -> Credentials:
    """What the worker needs to authenticate to the receiver."""
    both = opened(stored, box, endpoint_id)
    tls = both["tls"]
    client_tls = None
    if tls is not None:
        client_tls = ClientTls(tls["client_certificate"], tls["client_key"], tls.get("ca_bundle"))
    return Credentials(both["auth"], client_tls)


def masked(both: Mapping[str, Any], box: SecretBox) -> dict[str, Any]:
    """`auth` and `tls` for an answer: each secret `"***"`, with `<field>_fingerprints`."""
    shown: dict[str, Any] = {}
    for name, secret in (("auth", None), ("tls", TLS_SECRET)):
        value = both.get(name)
        if value is None:
            shown[name], shown[f"{name}_fingerprints"] = None, None
            continue
        secret = secret or AUTH_SECRETS[value["type"]]
        shown[name] = {**value, secret: MASK}
        shown[f"{name}_fingerprints"] = {secret: fingerprint(value[secret], box)}
    return shown


def written(
    fields: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """`auth` and `tls` as they will be stored after this write: a field not written keeps
    its value, null clears it, and a secret written `"***"` keeps the current secret.

    Raises:
        InvalidInputError: a `"***"` with no current secret of that kind to keep.
    """
    result = []
    for name, secret_of in (("auth", None), ("tls", TLS_SECRET)):
        if name not in fields:
            result.append(current.get(name))
            continue
        value = fields[name]
        if value is None:
            result.append(None)
            continue
        value = dict(value)
        secret = secret_of or AUTH_SECRETS[value["type"]]
        if value.get(secret) == MASK:
            before = current.get(name)
            same_kind = before is not None and before.get("type") == value.get("type")
            if before is None or not same_kind or secret not in before:
                raise InvalidInputError(
                    f"{name}.{secret}", '"***" keeps the current value, and there is none to keep'
                )
            value[secret] = before[secret]
        result.append(value)
    return result[0], result[1]
