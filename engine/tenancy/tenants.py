"""Tenants and their API keys (stored as SHA-256 digests, shown once)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from engine.db.connect import is_postgres
from engine.db.models import ApiKey, Tenant, db, utcnow
from engine.errors import InvalidInputError, NotFoundError
from engine.ids import new_id
from engine.sealed_fields import (
    ALERT_SECRETS,
    CURRENT,
    LEGACY,
    keep_masked,
    open_channels,
    seal_channels,
    seal_state,
)
from engine.secretbox import SecretBox
from engine.signing import InvalidSecretError, decode_secret
from engine.tenancy.credentials import CredentialCache, CredentialGeneration, Principal

KEY_PREFIX = "hk_"
# The characters of a key shown in listings and indexed (`api_key.prefix`).
PREFIX_CHARS = 10
ALL_SCOPES = (
    "events:write",
    "endpoints:read",
    "endpoints:write",
    "deliveries:read",
    "deliveries:write",
    "keys:manage",
    "event_types:read",
    "event_types:write",
    "audit:read",
)


def hash_key(api_key: str) -> str:
    """The digest stored for a key; keys are 256-bit random, so a fast hash suffices."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_tenant(name: str) -> tuple[Tenant, str]:
    """Create a tenant and its first API key; the key is returned only here."""
    with db.atomic():
        tenant = Tenant.create(id=new_id("ten"), name=name, created_at=utcnow())
        api_key = issue_key(tenant.id, ALL_SCOPES)
    return tenant, api_key


def issue_key(tenant_id: str, scopes: Sequence[str], name: str | None = None) -> str:
    """Store a new key for the tenant and return its only plaintext copy."""
    return new_key(tenant_id, scopes, name)[1]


def new_key(tenant_id: str, scopes: Sequence[str], name: str | None) -> tuple[ApiKey, str]:
    """Store a new key for the tenant; answer its row and its only plaintext copy."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey.create(
        id=new_id("key"),
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_key(api_key),
        prefix=api_key[:PREFIX_CHARS],
        scopes=[scope for scope in ALL_SCOPES if scope in scopes],
        created_at=utcnow(),
    )
    return row, api_key


def authenticate_key(api_key: str, cache: CredentialCache | None = None) -> Principal | None:
    """The principal a presented key stands for, or None if unknown or revoked.

    With a `cache`, a key authenticated within its TTL is not read again
    (`engine.tenancy.credentials` says how soon a revocation holds); without, every
    call reads the key's row.
    """
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 256:
        return None
    digest = hash_key(api_key)
    prefix = api_key[:PREFIX_CHARS]
    if cache is not None:
        cached = cache.get(digest)
        if cached is not None:
            return cached
        if cache.unknown(prefix):
            return None
    read_at = cache.generation.read() if cache is not None else 0
    query = (
        ApiKey.select(ApiKey.id, ApiKey.tenant_id, ApiKey.scopes, Tenant.rate_limits, Tenant.status)
        .join(Tenant, on=ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_null())
    )
    row = cast("dict[str, Any] | None", query.dicts().get_or_none())
    if row is None:
        if cache is not None and not _live_prefix(prefix):
            cache.put_unknown(prefix, generation=read_at)
        return None
    principal = Principal(
        row["tenant_id"],
        row["id"],
        frozenset(row["scopes"]),
        row["rate_limits"],
        tenant_status=row["status"],
    )
    if cache is not None:
        cache.put(digest, principal, generation=read_at)
    return principal


def _live_prefix(prefix: str) -> bool:
    """Whether a key that is not revoked starts with `prefix` (an index probe)."""
    return bool(
        ApiKey.select(ApiKey.id)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_null())
        .exists()
    )


def cached_principal(api_key: str, cache: CredentialCache) -> Principal | None:
    """The principal `cache` remembers for a presented key, or None; never reads a row."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 256:
        return None
    return cache.get(hash_key(api_key))


def find_tenant(tenant_id: str) -> Tenant | None:
    """The tenant with this id, or None."""
    return Tenant.get_or_none(Tenant.id == tenant_id)


def update_tenant(
    tenant_id: str, fields: Mapping[str, Any], *, credentials: CredentialGeneration, box: SecretBox
) -> Tenant:
    """Rename a tenant, replace its rate-limit or alert-channel overrides (None: the settings),
    switch its strict event types on or off, or set its retention in days (None: the setting).

    The alert channels' secrets are stored sealed (`engine.sealed_fields`); one written
    `"***"` keeps its current value. `credentials` is told of the change: cached
    principals carry the tenant's rate limits.

    Raises:
        NotFoundError: no such tenant.
        InvalidInputError: the alert webhook secret is not a usable `whsec_` secret, or a
            secret written `"***"` has no current value.
        CryptoError: the current alert channels do not open with the configured keys.
    """
    tenant = find_tenant(tenant_id)
    if tenant is None:
        raise NotFoundError("tenant", tenant_id)
    changes = dict(fields)
    if changes.get("alert_channels") is not None:
        changes["alert_channels"] = _sealed_channels(tenant, changes["alert_channels"], box)
    for name in ("name", "rate_limits", "alert_channels", "strict_event_types", "retention_days"):
        if name in changes:
            setattr(tenant, name, changes[name])
    tenant.save()
    credentials.changed()
    return tenant


def _sealed_channels(tenant: Tenant, written: Mapping[str, Any], box: SecretBox) -> dict | None:
    """The column for alert channels written over the tenant's: each `"***"` keeps its value."""
    current = open_channels(tenant.alert_channels, box, tenant.id)
    channels = keep_masked(written, current, "alert_channels")
    secret = channels.get("webhook_secret")
    if secret is not None:
        try:
            decode_secret(secret)
        except InvalidSecretError as exc:
            raise InvalidInputError("alert_channels.webhook_secret", str(exc)) from None
    return seal_channels(channels, box, tenant.id)


@dataclass(frozen=True)
class ChannelsResealReport:
    """What `reseal_alert_channels` did: tenants seen, channels sealed anew, and legacy
    plaintext found among them."""

    tenants: int = 0
    alert_channels_resealed: int = 0
    alert_channels_legacy_plaintext: int = 0


def reseal_alert_channels(box: SecretBox, *, batch: int = 500) -> ChannelsResealReport:
    """Seal every tenant's alert-channel secrets under the current key, in batches; safe
    to repeat. Legacy plaintext is sealed too.

    Each batch's rows are locked while they are sealed (on PostgreSQL): a compare-and-swap
    on the column would put its plaintext in the SQL that peewee logs at debug level.

    Raises:
        CryptoError: a stored value does not decrypt with the configured keys.
    """
    seen, resealed, legacy, after = 0, 0, 0, ""
    while True:
        with db.atomic():
            query = (
                Tenant.select(Tenant.id, Tenant.alert_channels)
                .where(Tenant.id > after)
                .order_by(Tenant.id)
                .limit(batch)
            )
            rows = list(query.for_update() if is_postgres(db.obj) else query)
            for row in rows:
                state = seal_state(row.alert_channels, box, ALERT_SECRETS)
                if state == CURRENT:
                    continue
                opened = open_channels(row.alert_channels, box, row.id)
                sealed = seal_channels(opened, box, row.id)
                Tenant.update(alert_channels=sealed).where(Tenant.id == row.id).execute()
                resealed, legacy = resealed + 1, legacy + (state == LEGACY)
        if not rows:
            return ChannelsResealReport(seen, resealed, legacy)
        seen, after = seen + len(rows), rows[-1].id


def is_admin_token(presented: str, configured: str | None) -> bool:
    """Constant-time comparison against the configured admin token."""
    if not configured:
        return False
    return hmac.compare_digest(presented.encode(), configured.encode())
