"""What the data weighs: rows and bytes per table, and the oldest day still stored.

Read by the scheduler for its gauges. On PostgreSQL the rows are the planner's
estimates (`pg_class.reltuples`, kept by autovacuum's analyses): a COUNT of
hundreds of millions of rows every minute would cost more than it tells.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from engine.db import partitions
from engine.db.models import db
from engine.ids import id_timestamp_ms

TABLES = ("event", "delivery", "attempt", "event_key")


class Sizes(NamedTuple):
    """Rows and bytes by table (bytes None where the database cannot tell), the oldest day."""

    rows: dict[str, int]
    bytes: dict[str, int | None]
    oldest: dt.datetime | None


def measure(database: Any) -> Sizes:
    """The sizes of the retained tables now."""
    if partitions.is_partitioned(database):
        return _postgres(database)
    return _counted()


def _postgres(database: Any) -> Sizes:
    rows: dict[str, int] = {}
    sizes: dict[str, int | None] = {}
    for table in TABLES:
        found = db.execute_sql(
            "SELECT COALESCE(SUM(GREATEST(c.reltuples, 0)), 0), "
            "COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.oid = %s::regclass OR c.oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
            (table, table),
        ).fetchone()
        rows[table], sizes[table] = int(found[0]), int(found[1])
    days = partitions.partition_days(database)
    oldest = dt.datetime(days[0].year, days[0].month, days[0].day) if days else None
    return Sizes(rows, sizes, oldest)


def _counted() -> Sizes:
    rows = {
        table: int(db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
        for table in TABLES
    }
    first = db.execute_sql("SELECT MIN(id) FROM event").fetchone()[0]
    oldest = None
    if first:
        oldest = dt.datetime.fromtimestamp(id_timestamp_ms(first) / 1000, dt.UTC)
        oldest = oldest.replace(tzinfo=None)
    return Sizes(rows, dict.fromkeys(TABLES), oldest)
