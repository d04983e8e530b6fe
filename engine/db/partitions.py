"""Daily range partitions of `event`, `delivery` and `attempt` on PostgreSQL (migration 15).

Each table is partitioned on a time-sorted id (`engine.ids`): `event` and `delivery`
on their own `id`, `attempt` on its `delivery_id`, so an attempt lives in its
delivery's partition. A delivery's id carries its event's time
(`engine.deliveries.fanout`), so day D's three partitions hold the events of day D
and everything made from them. A day's bounds are the ids of its midnight UTC with
zero random bits (`engine.ids.floor_id`): primary keys stay as they were, and a
lookup by id reads one partition. Each table also has a `_default` partition: it
holds the rows of a dropped day that still had work to do (`engine.retention`), and
catches a row no daily partition covers should the scheduler be down for days.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from peewee import PostgresqlDatabase

from engine.ids import floor_id

# table -> (partition key column, the id prefix its bounds carry)
PARTITIONED: dict[str, tuple[str, str]] = {
    "event": ("id", "evt"),
    "delivery": ("id", "dlv"),
    "attempt": ("delivery_id", "dlv"),
}
# Child tables first: the order partitions are dropped and rows are deleted in.
DROP_ORDER = ("attempt", "delivery", "event")

_DAY_NAME = re.compile(r"^(event|delivery|attempt)_p(\d{8})$")
_EPOCH = dt.datetime(1970, 1, 1)


def day_ms(day: dt.date) -> int:
    """Unix milliseconds of the day's midnight UTC."""
    return int((dt.datetime(day.year, day.month, day.day) - _EPOCH).total_seconds() * 1000)


def bounds(table: str, day: dt.date) -> tuple[str, str]:
    """The day's partition bounds of `table`: the lowest id of the day and of the next."""
    prefix = PARTITIONED[table][1]
    return (
        floor_id(prefix, day_ms(day)),
        floor_id(prefix, day_ms(day + dt.timedelta(days=1))),
    )


def name(table: str, day: dt.date) -> str:
    """The name of `table`'s partition for `day`: `event_p20250131`."""
    return f"{table}_p{day:%Y%m%d}"


def create_statements(day: dt.date) -> list[str]:
    """The statements that create the three tables' partitions of `day`, if absent."""
    statements = []
    for table in PARTITIONED:
        low, high = bounds(table, day)
        statements.append(
            f'CREATE TABLE IF NOT EXISTS "{name(table, day)}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    return statements


def default_statements() -> list[str]:
    """The statements that create each table's default partition."""
    return [
        f'CREATE TABLE IF NOT EXISTS "{table}_default" PARTITION OF "{table}" DEFAULT'
        for table in PARTITIONED
    ]


def create_days(database: Any, days: Iterable[dt.date]) -> list[dt.date]:
    """Create the partitions of these days that are missing; answer the days created."""
    have = set(partition_days(database))
    created = []
    for day in sorted(set(days) - have):
        for statement in create_statements(day):
            database.execute_sql(statement)
        created.append(day)
    return created


def partition_days(database: Any, table: str = "event") -> list[dt.date]:
    """The days `table` has a partition for, oldest first."""
    cursor = database.execute_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (table,),
    )
    days = []
    for (relname,) in cursor.fetchall():
        match = _DAY_NAME.match(relname)
        if match:
            days.append(dt.datetime.strptime(match.group(2), "%Y%m%d").date())
    return sorted(days)


def is_partitioned(database: Any) -> bool:
    """True when `event` is a partitioned table (PostgreSQL after migration 15)."""
    if not isinstance(database, PostgresqlDatabase):
        return False
    cursor = database.execute_sql(
        "SELECT 1 FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid "
        "WHERE c.relname = 'event'"
    )
    return cursor.fetchone() is not None
