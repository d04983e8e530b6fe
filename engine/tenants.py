"""Tenants and their API keys (stored as SHA-256 digests, shown once)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from engine.ids import new_id
from engine.models import ApiKey, Tenant, db, utcnow

KEY_PREFIX = "hk_"
ALL_SCOPES = (
    "events:write",
    "endpoints:read",
    "endpoints:write",
    "deliveries:read",
    "deliveries:write",
    "keys:manage",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one credential, with some scopes."""

    tenant_id: str
    credential_id: str
    scopes: frozenset[str]


def hash_key(api_key: str) -> str:
    """The digest stored for a key; keys are 256-bit random, so a fast hash suffices."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_tenant(name: str) -> tuple[Tenant, str]:
    """Create a tenant and its first API key; the key is returned only here."""
    with db.atomic():
        tenant = Tenant.create(id=new_id("ten"), name=name, created_at=utcnow())
        api_key = issue_key(tenant.id, ALL_SCOPES)
    return tenant, api_key


def issue_key(tenant_id: str, scopes: tuple[str, ...]) -> str:
    """Store a new key for the tenant and return its only plaintext copy."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.create(
        id=new_id("key"),
        tenant_id=tenant_id,
        key_hash=hash_key(api_key),
        prefix=api_key[:10],
        scopes=list(scopes),
        created_at=utcnow(),
    )
    return api_key


def authenticate_key(api_key: str) -> Principal | None:
    """The principal a presented key stands for, or None if unknown or revoked."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 256:
        return None
    row = ApiKey.get_or_none(ApiKey.key_hash == hash_key(api_key))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.tenant_id, row.id, frozenset(row.scopes))


def is_admin_token(presented: str, configured: str | None) -> bool:
    """Constant-time comparison against the configured admin token."""
    if not configured:
        return False
    return hmac.compare_digest(presented.encode(), configured.encode())
