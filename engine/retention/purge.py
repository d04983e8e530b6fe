"""Batched deletes: a tenant's events past its retention, with their deliveries and attempts.

The SQLite way of retention for every tenant, and the PostgreSQL way for a tenant
kept shorter than the longest retention (whose partitions are still live) and for
the rows a dropped day left in the default partition (`engine.retention.partitions`).
An event is never removed while one of its deliveries is live (`LIVE`) or its
fan-out is still pending: it stays, with its deliveries and attempts, until that
work ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from peewee import PostgresqlDatabase

from engine.db.models import OPEN_STATES, db

# What retention never removes: a delivery in one of these states still has work to do
# (quarantined, cancelled and succeeded ones are done).
LIVE = OPEN_STATES


class Scope(NamedTuple):
    """Whose events a purge takes: these tenants, or every tenant but the `excluded`."""

    tenants: Sequence[str] | None = None
    excluded: Sequence[str] = ()


def purge_batch(table: str, before: str, scope: Scope, *, batch: int) -> tuple[int, int]:
    """Delete up to `batch` events of `table` (`event`, or a partition of it) with ids
    below `before`, and theirs; answer (events looked at, rows deleted).

    One transaction. A delivery that turned live meanwhile keeps its row, its
    attempts and its event.
    """
    with db.atomic():
        events = _done_events(table, before, scope, batch)
        if not events:
            return 0, 0
        ids = [event_id for event_id, _key in events]
        deliveries, attempts = _delete_done_deliveries(ids)
        gone = _delete_events(ids)
        keys = _delete_keys(gone)
    return len(events), deliveries + attempts + len(gone) + keys


def _marks(values: Sequence[Any]) -> str:
    return ", ".join([db.param] * len(values))


def _done_events(table: str, before: str, scope: Scope, batch: int) -> list[tuple[str, str | None]]:
    """The oldest events of the scope below `before` whose work is done."""
    where, params = [f"e.id < {db.param}"], [before]
    if scope.tenants is not None:
        where.append(f"e.tenant_id IN ({_marks(scope.tenants)})")
        params.extend(scope.tenants)
    if scope.excluded:
        where.append(f"e.tenant_id NOT IN ({_marks(scope.excluded)})")
        params.extend(scope.excluded)
    sql = (
        f'SELECT e.id, e.idempotency_key FROM "{table}" e WHERE {" AND ".join(where)} '
        "AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = e.id "
        f"AND d.status IN ({_marks(LIVE)})) "
        "AND NOT EXISTS (SELECT 1 FROM event_fan_out f WHERE f.event_id = e.id) "
        f"ORDER BY e.id LIMIT {int(batch)}"
    )
    return [(row[0], row[1]) for row in db.execute_sql(sql, [*params, *LIVE]).fetchall()]


def _delete_done_deliveries(event_ids: list[str]) -> tuple[int, int]:
    """Delete the events' deliveries that are done, their attempts first; answer how many.

    On PostgreSQL they are locked as they are read, so none turns live in between.
    """
    lock = " FOR UPDATE" if isinstance(db.obj, PostgresqlDatabase) else ""
    sql = (
        f"SELECT id FROM delivery WHERE event_id IN ({_marks(event_ids)}) "
        f"AND status NOT IN ({_marks(LIVE)}){lock}"
    )
    done = [row[0] for row in db.execute_sql(sql, [*event_ids, *LIVE]).fetchall()]
    attempts = _delete_in("attempt", "delivery_id", done)
    return _delete_in("delivery", "id", done), attempts


def _delete_in(table: str, column: str, values: list[str]) -> int:
    if not values:
        return 0
    sql = f'DELETE FROM "{table}" WHERE "{column}" IN ({_marks(values)})'
    return int(db.execute_sql(sql, values).rowcount)


def _delete_keys(events: list[tuple[str, str, str | None]]) -> int:
    """The idempotency keys of these deleted events (tenant, id, key), tenant by tenant."""
    keys: dict[str, list[str]] = {}
    for tenant_id, _event_id, key in events:
        if key is not None:
            keys.setdefault(tenant_id, []).append(key)
    deleted = 0
    for tenant_id, tenant_keys in keys.items():
        sql = (
            f"DELETE FROM event_key WHERE tenant_id = {db.param} "
            f"AND idempotency_key IN ({_marks(tenant_keys)})"
        )
        deleted += int(db.execute_sql(sql, [tenant_id, *tenant_keys]).rowcount)
    return deleted


def _delete_events(event_ids: list[str]) -> list[tuple[str, str, str | None]]:
    """The events whose every delivery is gone (one that turned live keeps its event)."""
    sql = (
        f"DELETE FROM event WHERE id IN ({_marks(event_ids)}) "
        "AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = event.id) "
        "RETURNING tenant_id, id, idempotency_key"
    )
    return [(row[0], row[1], row[2]) for row in db.execute_sql(sql, event_ids).fetchall()]
