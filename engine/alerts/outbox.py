"""Alerts of record: emitted once, published by the scheduler, sent once per channel.

`emit` inserts inside the caller's transaction, keyed (endpoint, kind,
dedup): a retried tick, a redelivered message or two processes racing can
never emit one state change twice. Nothing publishes at emit time; the
scheduler's tick publishes unpublished alerts (an outbox), so the supervisor
never waits on the broker, and a publish lost to a crash is done again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.db.connect import is_postgres
from engine.db.models import AlertRecord, Tenant, db, utcnow
from engine.ids import new_id
from engine.sealed_fields import open_channels
from engine.secretbox import SecretBox


@dataclass(frozen=True)
class Pending:
    """An alert to send, with the tenant's channel overrides and the channels already done."""

    id: str
    kind: str
    facts: Mapping[str, Any]
    sent: frozenset[str]
    # Opened: its secrets in plaintext, so never in a repr.
    tenant_channels: Mapping[str, Any] | None = field(repr=False)


def emit(
    *,
    tenant_id: str,
    endpoint_id: str,
    kind: str,
    dedup: str,
    facts: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> str | None:
    """Record an alert unless this (endpoint, kind, dedup) was recorded before; answer its id."""
    now = now or utcnow()
    alert_id = new_id("alr")
    AlertRecord.insert(
        id=alert_id,
        tenant_id=tenant_id,
        endpoint_id=endpoint_id,
        kind=kind,
        dedup=dedup[:64],
        facts=dict(facts),
        sent=[],
        created_at=now,
    ).on_conflict_ignore().execute()
    found = AlertRecord.get_or_none(AlertRecord.id == alert_id)
    return alert_id if found is not None else None


def stamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with a Z, or None."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def take_unpublished(batch: int) -> list[str]:
    """Ids of alerts not yet handed to the broker, oldest first, locked on PostgreSQL."""
    query = (
        AlertRecord.select(AlertRecord.id)
        .where(AlertRecord.published_at.is_null())
        .order_by(AlertRecord.created_at)
        .limit(batch)
    )
    if is_postgres(db.obj):
        query = query.for_update(of=AlertRecord, skip_locked=True)
    return [row.id for row in query]


def mark_published(alert_ids: Sequence[str]) -> None:
    """Record that these alerts are in the broker."""
    if alert_ids:
        AlertRecord.update(published_at=utcnow()).where(
            AlertRecord.id.in_(list(alert_ids))
        ).execute()


def publish_pending(publish: Callable[[list[str]], int], batch: int) -> tuple[int, int]:
    """Hand unpublished alerts to `publish`, which answers how many the broker confirmed.

    Answers (confirmed, taken); the confirmed ones are marked published.
    """
    with db.atomic():
        ids = take_unpublished(batch)
        confirmed = publish(ids) if ids else 0
        mark_published(ids[:confirmed])
    return confirmed, len(ids)


def load(alert_id: str, box: SecretBox) -> Pending | None:
    """An alert with what its sender needs (the tenant's channels opened), or None if
    there is no such alert.

    Raises:
        CryptoError: the tenant's alert channels do not open with the configured keys.
    """
    row = AlertRecord.get_or_none(AlertRecord.id == alert_id)
    if row is None:
        return None
    tenant = Tenant.get_or_none(Tenant.id == row.tenant_id)
    channels = open_channels(tenant.alert_channels, box, tenant.id) if tenant else None
    return Pending(row.id, row.kind, dict(row.facts), frozenset(row.sent or ()), channels)


def mark_sent(alert_id: str, channel: str) -> None:
    """Record that one channel received the alert, so a retry skips it."""
    with db.atomic():
        query = AlertRecord.select().where(AlertRecord.id == alert_id)
        if is_postgres(db.obj):
            query = query.for_update()
        row = query.get_or_none()
        if row is None or channel in (row.sent or []):
            return
        AlertRecord.update(sent=[*(row.sent or []), channel]).where(
            AlertRecord.id == alert_id
        ).execute()


def for_endpoint(endpoint_id: str, limit: int = 50) -> list[AlertRecord]:
    """The endpoint's latest alerts, newest first."""
    return list(
        AlertRecord.select()
        .where(AlertRecord.endpoint_id == endpoint_id)
        .order_by(AlertRecord.created_at.desc(), AlertRecord.id.desc())
        .limit(limit)
    )
