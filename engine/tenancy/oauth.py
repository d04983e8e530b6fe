"""Hookline as an OAuth2 authorization server for machine clients (RFC 6749 §4.4).

A tenant's client (`oac_...`) holds scopes within its creator's and a secret shown
once, stored as a digest. The token endpoint gives it short-lived access tokens:
JWTs signed ES256 by a key Hookline made itself (`OAuthKey`, its private half sealed
with `HOOKLINE_SECRET_KEY`), a new one each `ROTATE_AFTER`, the public halves of the
keys whose tokens may still be live published as a JWKS. A token revoked (RFC 7009),
or any token of a deleted client, is refused from then on: `live` reads both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.db.connect import is_postgres
from engine.db.models import OAuthClient, OAuthKey, OAuthRevokedToken, db, utcnow
from engine.db.pages import Page, paginate
from engine.errors import NotFoundError
from engine.ids import new_id
from engine.secretbox import SecretBox, reseal_plan
from engine.tenancy.keys import require_held

SECRET_PREFIX = "hcs_"
AUDIENCE = "hookline"
TOKEN_TYPE = "at+jwt"  # RFC 9068's `typ` for JWT access tokens
ROTATE_AFTER = dt.timedelta(days=1)  # a signing key signs this long, then a new one
MAX_TOKEN_TTL_S = 3600


@dataclass(frozen=True)
class Issued:
    """An access token and what the token endpoint answers beside it."""

    token: str
    expires_in: int
    scopes: tuple[str, ...]


def hash_secret(secret: str) -> str:
    """The digest stored for a client secret (256-bit random, so a fast hash suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_client(
    tenant_id: str, name: str, scopes: Sequence[str], *, held: Iterable[str]
) -> tuple[OAuthClient, str]:
    """A new client with `scopes`, all of which the caller holds; its only plaintext secret.

    Raises:
        ForbiddenError: a requested scope the caller does not hold (the first, by name).
    """
    require_held(scopes, held, "grant")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row = OAuthClient.create(
        id=new_id("oac"),
        tenant_id=tenant_id,
        name=name,
        scopes=sorted(set(scopes)),
        secret_hash=hash_secret(secret),
        created_at=utcnow(),
    )
    return row, secret


def list_clients(tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """The tenant's clients that are not deleted, newest first."""
    query = OAuthClient.select().where(
        OAuthClient.tenant_id == tenant_id, OAuthClient.deleted_at.is_null()
    )
    return paginate(query, OAuthClient.id, limit=limit, cursor=cursor)


def get_client(tenant_id: str, client_id: str) -> OAuthClient:
    """One of the tenant's live clients.

    Raises:
        NotFoundError: no such client, or it is deleted.
    """
    row = OAuthClient.get_or_none(
        (OAuthClient.id == client_id)
        & (OAuthClient.tenant_id == tenant_id)
        & OAuthClient.deleted_at.is_null()
    )
    if row is None:
        raise NotFoundError("oauth client", client_id)
    return row


def delete_client(tenant_id: str, client_id: str, *, held: Iterable[str]) -> None:
    """Delete a client whose scopes the caller all holds; its tokens die with it.

    Raises:
        NotFoundError: no such live client of this tenant.
        ForbiddenError: the client has a scope the caller lacks.
    """
    row = get_client(tenant_id, client_id)
    require_held(row.scopes, held, "delete a client with")
    gone = (
        OAuthClient.update(deleted_at=utcnow())
        .where((OAuthClient.id == client_id) & OAuthClient.deleted_at.is_null())
        .execute()
    )
    if not gone:
        raise NotFoundError("oauth client", client_id)


def authenticate_client(client_id: str, secret: str) -> OAuthClient | None:
    """The live client these credentials name, or None (unknown, deleted or wrong secret)."""
    if not client_id.startswith("oac_") or len(client_id) > 64:
        return None
    row = OAuthClient.get_or_none((OAuthClient.id == client_id) & OAuthClient.deleted_at.is_null())
    if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
        return None
    return row


def granted(client: OAuthClient, requested: str | None) -> tuple[str, ...] | None:
    """The scopes a token gets: the client's, or the requested ones if all are the client's;
    None when a requested scope is not (RFC 6749 §3.3: `invalid_scope`)."""
    if requested is None or not requested.strip():
        return tuple(client.scopes)
    asked = sorted(set(requested.split()))
    return tuple(asked) if set(asked) <= set(client.scopes) else None


def issue(
    client: OAuthClient,
    scopes: Sequence[str],
    *,
    box: SecretBox,
    issuer: str,
    ttl_s: int,
    now: dt.datetime | None = None,
) -> Issued:
    """An access token for the client, signed by the current key (made if none is)."""
    now = now or utcnow()
    kid, key = signing_key(box, now)
    at = int(now.replace(tzinfo=dt.UTC).timestamp())
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": client.id,
        "client_id": client.id,
        "tenant_id": client.tenant_id,
        "scope": " ".join(scopes),
        "jti": new_id("tok"),
        "iat": at,
        "exp": at + ttl_s,
    }
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": TOKEN_TYPE})
    return Issued(token, ttl_s, tuple(scopes))


def signing_key(box: SecretBox, now: dt.datetime) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """The newest key younger than `ROTATE_AFTER`, made now if there is none."""
    row = (
        OAuthKey.select()
        .where(OAuthKey.created_at > now - ROTATE_AFTER)
        .order_by(OAuthKey.created_at.desc())
        .first()
    )
    if row is None:
        row = _new_key(box, now)
    pem = box.open(row.private_key, row.kid).encode()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return row.kid, key


def _new_key(box: SecretBox, now: dt.datetime) -> OAuthKey:
    key = ec.generate_private_key(ec.SECP256R1())
    kid = new_id("kid")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return OAuthKey.create(
        kid=kid,
        private_key=box.seal(pem, kid),
        public_jwk={**public, "kid": kid, "use": "sig", "alg": "ES256"},
        created_at=now,
    )


def public_jwks(now: dt.datetime | None = None) -> dict[str, list[dict[str, str]]]:
    """The public keys whose tokens may still be live, newest first, as a JWKS."""
    now = now or utcnow()
    oldest = now - ROTATE_AFTER - dt.timedelta(seconds=MAX_TOKEN_TTL_S)
    rows = (
        OAuthKey.select().where(OAuthKey.created_at > oldest).order_by(OAuthKey.created_at.desc())
    )
    return {"keys": [dict(row.public_jwk) for row in rows]}


def revoke(jti: str, tenant_id: str, client_id: str, expires_at: dt.datetime) -> None:
    """Refuse the token from now until it expires (a second revocation changes nothing)."""
    OAuthRevokedToken.insert(
        jti=jti,
        tenant_id=tenant_id,
        client_id=client_id,
        expires_at=expires_at,
        revoked_at=utcnow(),
    ).on_conflict_ignore().execute()


def live(jti: str, client_id: str) -> bool:
    """True unless the token was revoked or its client deleted."""
    revoked = OAuthRevokedToken.select().where(OAuthRevokedToken.jti == jti)
    client = OAuthClient.select().where(
        (OAuthClient.id == client_id) & OAuthClient.deleted_at.is_null()
    )
    return bool(client.exists()) and not revoked.exists()


def sweep_revoked(now: dt.datetime | None = None) -> int:
    """Forget revocations of tokens that have expired anyway; how many."""
    now = now or utcnow()
    return int(OAuthRevokedToken.delete().where(OAuthRevokedToken.expires_at < now).execute())


def reseal_keys(box: SecretBox) -> int:
    """Seal every signing key's private half under the current key; how many changed.

    Raises:
        CryptoError: a stored key does not decrypt with the configured keys.
    """
    changed = 0
    with db.atomic():
        query = OAuthKey.select(OAuthKey.kid, OAuthKey.private_key)
        for row in query.for_update() if is_postgres(db.obj) else query:
            if not reseal_plan(box, [row.private_key]):
                continue
            opened = box.open(row.private_key, row.kid)
            OAuthKey.update(private_key=box.seal(opened, row.kid)).where(
                OAuthKey.kid == row.kid
            ).execute()
            changed += 1
    return changed
