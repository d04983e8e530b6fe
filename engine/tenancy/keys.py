"""A tenant's API keys: issue, list, revoke.

Keys are shown once, when issued, and stored as digests (`engine.tenancy.tenants`).
A key can only hand out scopes it holds itself, so `keys:manage` never
escalates into more than its holder already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.db.models import ApiKey, db, utcnow
from engine.db.pages import Page, paginate
from engine.errors import ForbiddenError, NotFoundError
from engine.tenancy.credentials import CredentialGeneration
from engine.tenancy.tenants import new_key


def require_held(scopes: Iterable[str], held: Iterable[str], doing: str) -> None:
    """Raise unless the caller holds every one of `scopes`: a credential never hands out,
    or takes away, a power it lacks. `doing` completes "A credential cannot ...".

    Raises:
        ForbiddenError: the first scope the caller lacks, by name.
    """
    missing = sorted(set(scopes) - set(held))
    if missing:
        raise ForbiddenError(
            missing[0], f"A credential cannot {doing} the scope {missing[0]}, which it lacks."
        )


def create_key(
    tenant_id: str, name: str | None, scopes: Sequence[str], *, held: Iterable[str]
) -> tuple[ApiKey, str]:
    """Issue a key with `scopes`, all of which the caller must hold; answer its only plaintext.

    Raises:
        ForbiddenError: a requested scope the caller does not hold (the first, by name).
    """
    require_held(scopes, held, "grant")
    return new_key(tenant_id, scopes, name)


def list_keys(tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """The tenant's keys that are not revoked, newest first."""
    query = ApiKey.select().where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_null())
    return paginate(query, ApiKey.id, limit=limit, cursor=cursor)


def revoke_key(
    tenant_id: str,
    key_id: str,
    *,
    held: Iterable[str],
    credentials: CredentialGeneration,
) -> None:
    """Revoke a key whose scopes the caller all holds (`held`), and tell `credentials`, the
    counter the API's caches read.

    From the next request on, in every process of this host, the key
    authenticates nothing (on other hosts within `engine.tenancy.credentials`' TTL).
    A key may revoke no key it could not have issued: a `keys:manage` key without
    `endpoints:write` cannot take that power from the tenant's keys that have it.

    Raises:
        NotFoundError: the tenant has no such key, or it is revoked already.
        ForbiddenError: the key has a scope the caller lacks (the first, by name).
    """
    with db.atomic():
        row = (
            ApiKey.select(ApiKey.scopes)
            .where(
                ApiKey.id == key_id,
                ApiKey.tenant_id == tenant_id,
                ApiKey.revoked_at.is_null(),
            )
            .first()
        )
        if row is None:
            raise NotFoundError("key", key_id)
        require_held(row.scopes, held, "revoke a key with")
        revoked = (
            ApiKey.update(revoked_at=utcnow())
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_null())
            .execute()
        )
    if not revoked:
        raise NotFoundError("key", key_id)
    credentials.changed()
