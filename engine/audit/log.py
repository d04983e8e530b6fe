"""Audit entries: written one per change, read newest first, purged past their retention."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.db.models import AuditEntry, db, utcnow
from engine.db.pages import Page, paginate
from engine.ids import new_id

# Rows one purge statement deletes.
PURGE_BATCH = 1000
ACTOR_KINDS = ("api_key", "jwt", "oauth_client", "admin")


@dataclass(frozen=True)
class Change:
    """One change made through the API, as the audit log keeps it."""

    tenant_id: str | None  # None: the admin's own record (a tenant deleted)
    actor_kind: str  # one of ACTOR_KINDS
    actor_id: str
    action: str  # "PATCH /v1/endpoints/{endpoint_id}": the method and the route template
    target_id: str | None
    status_code: int
    changes: Mapping[str, Any] | None  # secrets already replaced by "changed"
    actor_subject: str | None = None
    request_id: str | None = None


def record(change: Change, now: dt.datetime | None = None) -> str:
    """Store one entry; answer its id."""
    ident = new_id("aud")
    AuditEntry.insert(
        id=ident,
        tenant_id=change.tenant_id,
        actor_kind=change.actor_kind,
        actor_id=change.actor_id[:64],
        actor_subject=change.actor_subject,
        action=change.action[:255],
        target_id=None if change.target_id is None else change.target_id[:255],
        status_code=change.status_code,
        changes=None if change.changes is None else dict(change.changes),
        request_id=change.request_id,
        created_at=now or utcnow(),
    ).execute()
    return ident


def list_entries(
    tenant_id: str | None,
    *,
    limit: int,
    cursor: str | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    action: str | None = None,
    everyone: bool = False,
) -> Page:
    """Entries newest first: the tenant's, or with `everyone` every tenant's and the admin's.

    `since` is inclusive and `until` exclusive; `action` is a method and route template.
    """
    query = AuditEntry.select()
    if not everyone or tenant_id is not None:
        query = query.where(AuditEntry.tenant_id == tenant_id)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    if until is not None:
        query = query.where(AuditEntry.created_at < until)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return paginate(query, AuditEntry.id, limit=limit, cursor=cursor)


def purge(
    cutoff: dt.datetime,
    *,
    tenant_cutoffs: Mapping[str, dt.datetime] | None = None,
    batch: int = PURGE_BATCH,
) -> int:
    """Delete entries created before `cutoff`, a batch per transaction; answer how many.

    A tenant in `tenant_cutoffs` keeps its entries until its own cutoff instead (a
    shorter or longer retention than the installation's). The admin's own entries
    (no tenant) follow `cutoff`. The retention pass calls it with the same cutoffs as
    the events' (`HOOKLINE_RETENTION_DAYS` and each tenant's `retention_days`).
    """
    overrides = dict(tenant_cutoffs or {})
    old = AuditEntry.created_at < cutoff
    if overrides:
        old &= AuditEntry.tenant_id.is_null() | AuditEntry.tenant_id.not_in(list(overrides))
    removed = _purge_where(old, batch)
    for tenant_id, own in sorted(overrides.items()):
        removed += _purge_where(
            (AuditEntry.tenant_id == tenant_id) & (AuditEntry.created_at < own), batch
        )
    return removed


def _purge_where(where: Any, batch: int) -> int:
    removed = 0
    while True:
        with db.atomic():
            ids = [row.id for row in AuditEntry.select(AuditEntry.id).where(where).limit(batch)]
            if ids:
                AuditEntry.delete().where(AuditEntry.id.in_(ids)).execute()
        removed += len(ids)
        if len(ids) < batch:
            return removed
