"""JWT bearer tokens, the alternative to API keys.

The algorithm is taken from the token's header only to pick the key, and
only among those configured: HS256 is checked with the configured secret and
nothing else, RS256 with RSA public keys, ES256 with P-256 public keys. So
`alg: none` and algorithm confusion (an HS256 token whose secret is the RSA
public key) are refused. `exp` is required; `nbf`, `iss` and `aud` are
checked; the tenant and scopes come from the configured claims.

Tokens of an OAuth2/OIDC identity provider (`HOOKLINE_OAUTH2_*`) are checked by
`ProviderTokens` against the provider's published keys (`api.jwks`), RS256 or ES256
only: those whose `iss` is the provider's go there (every asymmetric token, when only
a JWKS URL names the provider and no local public key is configured).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from api.jwks import KeysUnavailable, ProviderKeys
from api.own_tokens import OwnTokens
from engine.alerts.messages import public_base
from engine.errors import SettingsError
from engine.settings import Settings
from engine.tenancy.tenants import ALL_SCOPES

# Which public key type checks which algorithm.
_KEY_TYPES: dict[str, type] = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}


class TokenError(Exception):
    """A token is refused; the message is safe to show the caller."""


class ProviderUnavailable(TokenError):
    """The identity provider's keys cannot be had: the token is neither good nor bad yet."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says: its tenant, scopes, and a stable credential id."""

    tenant_id: str
    scopes: frozenset[str]
    credential_id: str
    subject: str | None = None  # `sub`, for the audit log


@dataclass(frozen=True)
class PublicKey:
    """One configured public key, and its JWKS `kid` if it has one."""

    kid: str | None
    key: Any


class TokenVerifier:
    """Verifies JWTs against the keys the settings configure."""

    def __init__(self, settings: Settings, provider: ProviderTokens | None = None) -> None:
        self.settings = settings
        self.public_keys = _load_public_keys(settings)
        self.algorithms = settings.jwt_algorithms or _inferred_algorithms(
            settings, self.public_keys
        )
        configured = settings.oauth2_issuer or settings.oauth2_jwks_url
        self.provider = provider or (ProviderTokens(settings) if configured else None)
        self.own = OwnTokens(own_issuer(settings))

    def accepts(self, token: str) -> bool:
        """True when `token` is one this verifier should judge: some JWT is configured, or
        it is shaped as one of Hookline's own access tokens."""
        return self.enabled or (token.count(".") == 2 and self.own.takes(_unverified_iss(token)))

    @property
    def enabled(self) -> bool:
        """True when some algorithm has a key to check it with, or a provider is set."""
        return bool(self.algorithms) or self.provider is not None

    def verify(self, token: str) -> Claims:
        """The claims of a valid token.

        Raises:
            TokenError: the token is malformed, unsigned, forged, expired or lacks a claim.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("The bearer token is not a JWT.") from None
        algorithm = header.get("alg")
        if self.own.takes(_unverified_iss(token)):
            return self._own(token, header.get("kid"))
        if self.provider is not None and self.provider.takes(token, algorithm, self.public_keys):
            return self.provider.verify(token, algorithm, header.get("kid"))
        if algorithm not in self.algorithms:
            raise TokenError(f"Tokens signed with {str(algorithm)[:16]!r} are not accepted.")
        return self._claims(self._decode(token, algorithm, header.get("kid")))

    def _own(self, token: str, kid: Any) -> Claims:
        """The claims of one of Hookline's own access tokens (`api.own_tokens`)."""
        try:
            payload = self.own.decode(token, kid)
        except jwt.PyJWTError as exc:
            if str(exc) == "revoked":
                raise TokenError("The token is revoked.") from None
            raise TokenError(_explain(exc)) from None
        raw = payload.get("scope")
        scopes = frozenset(s for s in str(raw or "").split() if s in ALL_SCOPES)
        client_id = str(payload["client_id"])
        return Claims(str(payload["tenant_id"]), scopes, client_id, client_id)

    def _decode(self, token: str, algorithm: str, kid: Any) -> dict[str, Any]:
        required = ["exp"]
        required += ["iss"] if self.settings.jwt_issuer else []
        required += ["aud"] if self.settings.jwt_audience else []
        failure: jwt.PyJWTError = jwt.InvalidSignatureError()
        for key in self._keys(algorithm, kid):
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    issuer=self.settings.jwt_issuer,
                    audience=self.settings.jwt_audience,
                    leeway=self.settings.jwt_leeway_s,
                    options={"require": required},
                )
            except jwt.InvalidSignatureError as exc:
                failure = exc  # another key of this type (and kid) may still match
            except jwt.PyJWTError as exc:
                raise TokenError(_explain(exc)) from None
        raise TokenError(_explain(failure))

    def _keys(self, algorithm: str, kid: Any) -> list[Any]:
        """The keys that may check `algorithm`: HS256 only ever gets the shared secret."""
        if algorithm == "HS256":
            return [self.settings.jwt_hs256_secret]
        return [
            candidate.key
            for candidate in self.public_keys
            if isinstance(candidate.key, _KEY_TYPES[algorithm])
            and _curve_fits(candidate.key, algorithm)
            and (kid is None or candidate.kid in (None, kid))
        ]

    def _claims(self, payload: dict[str, Any]) -> Claims:
        tenant_id = payload.get(self.settings.jwt_tenant_claim)
        if not isinstance(tenant_id, str) or not tenant_id:
            raise TokenError(f"The token has no {self.settings.jwt_tenant_claim!r} claim.")
        raw = payload.get(self.settings.jwt_scope_claim) or ()
        granted = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else ()
        scopes = frozenset(scope for scope in granted if scope in ALL_SCOPES)
        subject = str(payload.get("sub", ""))
        # Rate limits count per credential: one per tenant and subject, whichever token it is.
        digest = hashlib.sha256(f"{tenant_id}\0{subject}".encode()).hexdigest()[:26]
        return Claims(tenant_id, scopes, "jwt_" + digest, subject[:255] or None)


class ProviderTokens:
    """Verifies the tokens of the configured OAuth2/OIDC identity provider.

    `iss` (when an issuer is set), `aud`, `exp` and `nbf` are checked, with
    `HOOKLINE_JWT_LEEWAY_S` of clock skew; the tenant and scopes come from the
    `HOOKLINE_OAUTH2_*_CLAIM` claims, each scope mapped to Hookline's by its prefix.
    """

    ALGORITHMS = ("RS256", "ES256")

    def __init__(self, settings: Settings, keys: ProviderKeys | None = None) -> None:
        self.settings = settings
        self.issuer = settings.oauth2_issuer
        self.keys = keys or ProviderKeys(issuer=self.issuer, jwks_url=settings.oauth2_jwks_url)

    def takes(self, token: str, algorithm: Any, local_keys: list[PublicKey]) -> bool:
        """True when this token is the provider's to check (see the module)."""
        if algorithm == "HS256":
            return False
        if self.issuer is None:
            return not local_keys
        return bool(_unverified_iss(token) == self.issuer)

    def verify(self, token: str, algorithm: Any, kid: Any) -> Claims:
        """The claims of a valid provider token.

        Raises:
            TokenError: refused, or the provider's keys cannot be had.
        """
        if algorithm not in self.ALGORITHMS:
            raise TokenError(f"Tokens signed with {str(algorithm)[:16]!r} are not accepted.")
        try:
            candidates = self.keys.keys_for(kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            raise ProviderUnavailable(str(exc)) from None
        fitting: list[Any] = [
            k.key
            for k in candidates
            if isinstance(k.key, _KEY_TYPES[algorithm]) and _curve_fits(k.key, algorithm)
        ]
        if not fitting:
            raise TokenError("The token's key is not one of the identity provider's.")
        failure: jwt.PyJWTError = jwt.InvalidSignatureError()
        for key in fitting:
            try:
                payload = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    issuer=self.issuer,
                    audience=self.settings.oauth2_audience,
                    leeway=self.settings.jwt_leeway_s,
                    options={"require": ["exp", "aud"] + (["iss"] if self.issuer else [])},
                )
            except jwt.InvalidSignatureError as exc:
                failure = exc
                continue
            except jwt.PyJWTError as exc:
                raise TokenError(_explain(exc)) from None
            return self._claims(payload)
        raise TokenError(_explain(failure))

    def _claims(self, payload: dict[str, Any]) -> Claims:
        claim = self.settings.oauth2_tenant_claim
        tenant_id = payload.get(claim)
        if not isinstance(tenant_id, str) or not tenant_id:
            raise TokenError(f"The token has no {claim!r} claim.")
        scopes = provider_scopes(
            payload, self.settings.oauth2_scope_claim, self.settings.oauth2_scope_prefix
        )
        subject = str(payload.get("sub", ""))
        issuer = str(payload.get("iss", ""))
        digest = hashlib.sha256(f"{issuer}\0{tenant_id}\0{subject}".encode()).hexdigest()[:26]
        return Claims(tenant_id, scopes, "oidc_" + digest, subject[:255] or None)


def provider_scopes(payload: dict[str, Any], claim: str, prefix: str) -> frozenset[str]:
    """Hookline's scopes among a token's: `claim` (or `scp`, for `scope`) as a space-separated
    string or a list, each stripped of `prefix`; unknown scopes are ignored."""
    raw = payload.get(claim)
    if raw is None and claim == "scope":
        raw = payload.get("scp")
    granted = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else ()
    named = (s[len(prefix) :] for s in granted if isinstance(s, str) and s.startswith(prefix))
    return frozenset(scope for scope in named if scope in ALL_SCOPES)


def own_issuer(settings: Settings) -> str:
    """The `iss` of the access tokens this Hookline issues: its public base URL."""
    return public_base(settings)


def _unverified_iss(token: str) -> Any:
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return payload.get("iss") if isinstance(payload, dict) else None


def _explain(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "The token has expired."
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "The token is not valid yet."
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"The token lacks the {exc.claim!r} claim."
    if isinstance(exc, jwt.InvalidIssuerError):
        return "The token's issuer is not accepted."
    if isinstance(exc, jwt.InvalidAudienceError):
        return "The token's audience is not accepted."
    if isinstance(exc, jwt.InvalidSignatureError):
        return "The token's signature does not verify."
    return "The token is malformed."


def _curve_fits(key: Any, algorithm: str) -> bool:
    return algorithm != "ES256" or isinstance(key.curve, ec.SECP256R1)


def _inferred_algorithms(settings: Settings, public_keys: list[PublicKey]) -> tuple[str, ...]:
    found = ["HS256"] if settings.jwt_hs256_secret else []
    for algorithm, key_type in _KEY_TYPES.items():
        if any(isinstance(candidate.key, key_type) for candidate in public_keys):
            found.append(algorithm)
    return tuple(found)


def _load_public_keys(settings: Settings) -> list[PublicKey]:
    """The PEM key and the JWKS keys; only RSA and EC public keys are kept.

    Raises:
        SettingsError: a configured file cannot be read or holds no usable key.
    """
    keys: list[PublicKey] = []
    if settings.jwt_public_key_file:
        name = "HOOKLINE_JWT_PUBLIC_KEY_FILE"
        try:
            with open(settings.jwt_public_key_file, "rb") as handle:
                keys.append(PublicKey(None, load_pem_public_key(handle.read())))
        except (OSError, ValueError) as exc:
            raise SettingsError(name, f"cannot load a PEM public key: {exc}") from None
    if settings.jwt_jwks_file:
        keys += _load_jwks(settings.jwt_jwks_file)
    return keys


def _load_jwks(path: str) -> list[PublicKey]:
    name = "HOOKLINE_JWT_JWKS_FILE"
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        entries = [e for e in document["keys"] if e.get("kty") in ("RSA", "EC") and "d" not in e]
        keys = [PublicKey(entry.get("kid"), jwt.PyJWK(entry).key) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, jwt.PyJWTError) as exc:
        raise SettingsError(name, f"cannot load a JWKS: {exc}") from None
    if not keys:
        raise SettingsError(name, "holds no RSA or EC public key")
    return keys
