"""PostgreSQL's daily partitions over time: created ahead, dropped past the longest retention.

A day is dropped once its last event is older than the longest retention of any
tenant. Its three partitions (`engine.db.partitions`) are detached and dropped
together in one short transaction; live work in them (a delivery still to do, its
event and attempts, an event whose fan-out is pending) is first copied into the
tables' default partitions, where it stays, like any other row, until its work is
done and a batched purge (`engine.retention.purge`) takes it. So retention never
removes live work, and live work never keeps a day's disk from being freed.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from engine.db import partitions
from engine.db.models import (
    DELIVERING,
    PARKED,
    PAUSED,
    PENDING,
    QUEUED,
    SCHEDULED,
    THROTTLED,
    db,
)
from engine.retention.purge import LIVE

# Days created past today: ingest never waits on a partition being made.
AHEAD_DAYS = 3
# How long a statement of a drop or a creation waits for a lock before it gives up until the
# next pass: the statements queued behind a waiting ACCESS EXCLUSIVE lock wait with it, so
# this bounds the pause one can cause to ingest and delivery.
LOCK_TIMEOUT_MS = 100
# A drop takes every lock it needs at once, with NOWAIT: a try that finds a table in use
# gives up at once, so no statement ever queues behind it, and tries again this many
# times, this far apart, before it leaves the day to the next pass. (Waiting up to 100 ms
# per try, the first version's, held ingest behind it and gave up 16 times at 1M rows.)
LOCK_TRIES = 50
LOCK_RETRY_S = 0.02


def is_lock_timeout(exc: BaseException) -> bool:
    """True for a lock not taken, by `lock_timeout` or NOWAIT (try again on the next pass)."""
    text = str(exc)
    return "lock timeout" in text or "could not obtain lock" in text


def create_ahead(database: Any, today: dt.date) -> list[dt.date]:
    """Create today's partitions and the next `AHEAD_DAYS`' where missing; answer those made."""
    days = [today + dt.timedelta(days=n) for n in range(AHEAD_DAYS + 1)]
    with db.atomic():
        db.execute_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        return partitions.create_days(database, days)


def droppable(database: Any, now: dt.datetime, longest_days: int) -> list[dt.date]:
    """The days whose every event is older than `longest_days`, oldest first."""
    horizon = (now - dt.timedelta(days=longest_days)).date()
    return [day for day in partitions.partition_days(database) if day < horizon]


def forget_keys(day: dt.date, *, batch: int) -> int:
    """Delete one batch of the idempotency keys of the day's events whose work is done.

    Before the drop, in batches, so the drop's transaction stays short.
    """
    low, high = partitions.bounds("event", day)
    sql = (
        "DELETE FROM event_key WHERE (tenant_id, idempotency_key) IN ("
        "SELECT k.tenant_id, k.idempotency_key FROM event_key k "
        "WHERE k.created_at < %s AND k.event_id >= %s AND k.event_id < %s "
        "AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.event_id = k.event_id "
        f"AND d.status IN ({', '.join(['%s'] * len(LIVE))})) "
        f"AND NOT EXISTS (SELECT 1 FROM event_fan_out f WHERE f.event_id = k.event_id) "
        f"LIMIT {int(batch)})"
    )
    end = dt.datetime(day.year, day.month, day.day) + dt.timedelta(days=1, minutes=1)
    with db.atomic():
        return int(db.execute_sql(sql, [end, low, high, *LIVE]).rowcount)


@dataclass(frozen=True)
class Drop:
    """What dropping one day did."""

    rows: int  # removed
    kept: int  # live work copied into the default partitions
    held_s: float  # how long the tables were locked: what traffic waited at most
    tries: int  # the tries it took to take the locks


def drop_day(day: dt.date) -> Drop:
    """Detach and drop the day's three partitions, its live work kept in the defaults.

    Raises peewee's error when the locks could not be taken in `LOCK_TRIES` tries
    (`is_lock_timeout`).
    """
    names = {table: partitions.name(table, day) for table in partitions.PARTITIONED}
    # Counted before the locks are taken: no new row comes to a day past retention.
    dropped = sum(_count(names[table]) for table in partitions.DROP_ORDER)
    for tried in range(1, LOCK_TRIES + 1):
        try:
            with db.atomic():
                db.execute_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                _lock(names)
                locked = time.monotonic()
                for table in partitions.DROP_ORDER:
                    db.execute_sql(f'ALTER TABLE "{table}" DETACH PARTITION "{names[table]}"')
                kept = _keep_live(day, names)
                for table in partitions.DROP_ORDER:
                    db.execute_sql(f'DROP TABLE "{names[table]}"')
            return Drop(max(0, dropped - kept), kept, time.monotonic() - locked, tried)
        except Exception as exc:
            if not is_lock_timeout(exc) or tried == LOCK_TRIES:
                raise
            time.sleep(LOCK_RETRY_S)
    raise AssertionError("unreachable")  # pragma: no cover


def _lock(names: dict[str, str]) -> None:
    """Every lock the drop needs, at once or not at all: the three tables themselves (not
    their other days), the day's partitions, and the defaults its live work goes to."""
    targets = [f'ONLY "{table}"' for table in partitions.DROP_ORDER]
    targets += [f'"{names[table]}"' for table in partitions.DROP_ORDER]
    targets += [f'"{table}_default"' for table in partitions.DROP_ORDER]
    db.execute_sql(f"LOCK TABLE {', '.join(targets)} IN ACCESS EXCLUSIVE MODE NOWAIT")


# The day's live deliveries, one arm per partial index that covers some of the open states
# (`delivery_lease`, `_due`, `_parked`, `_throttled`, `_paused`), each arm's states spelled as
# its index's predicate is: each reads its small index, never the partition, so the copy
# under the locks costs what is live, not the day. Together they are `LIVE` (a test holds it).
LIVE_ARMS = (
    (PENDING, QUEUED, DELIVERING),
    (SCHEDULED,),
    (PARKED,),
    (THROTTLED,),
    (PAUSED,),
)


def arm_sql(states: tuple[str, ...]) -> str:
    """The SQL condition of one arm, spelled as its index's predicate is."""
    if len(states) == 1:
        return f"status = '{states[0]}'"
    return "status IN ({})".format(", ".join(f"'{state}'" for state in states))


def live_sql(partition: str) -> str:
    """The query of a day's delivery partition for its live deliveries' ids and events."""
    return " UNION ALL ".join(
        f'SELECT id, event_id FROM "{partition}" WHERE {arm_sql(arm)}' for arm in LIVE_ARMS
    )


def _keep_live(day: dt.date, names: dict[str, str]) -> int:
    """Copy the day's live work from its detached partitions into the default ones.

    The live deliveries are found through the partial indexes, then their rows, their
    attempts and their events by key; so are the day's events with a fan-out pending, and
    those with a live delivery in a later day's partition (a backfill's, say).
    """
    deliveries = names["delivery"]
    live = db.execute_sql(live_sql(deliveries)).fetchall()
    ids = [row[0] for row in live]
    low, high = partitions.bounds("event", day)
    kept = 0
    if ids:
        kept += _copy(
            f'INSERT INTO delivery_default SELECT * FROM "{deliveries}" WHERE id = ANY(%s)', ids
        )
        kept += _copy(
            f'INSERT INTO attempt_default SELECT * FROM "{names["attempt"]}" '
            "WHERE delivery_id = ANY(%s)",
            ids,
        )
    # Open deliveries of the day's events anywhere else (the day's own are in the default now).
    elsewhere = "status IN ({})".format(", ".join(["%s"] * len(LIVE)))
    events = {row[1] for row in live}
    events.update(
        row[0]
        for row in db.execute_sql(
            "SELECT event_id FROM delivery WHERE event_id >= %s AND event_id < %s "
            f"AND {elsewhere} UNION SELECT event_id FROM event_fan_out "
            "WHERE event_id >= %s AND event_id < %s",
            [low, high, *LIVE, low, high],
        ).fetchall()
    )
    if events:
        kept += _copy(
            f'INSERT INTO event_default SELECT * FROM "{names["event"]}" WHERE id = ANY(%s)',
            sorted(events),
        )
    return kept


def _copy(sql: str, keys: list[str]) -> int:
    """Run one copy by keys; answer the rows it copied."""
    return int(db.execute_sql(sql, [keys]).rowcount)


def _count(table: str) -> int:
    """The rows of one day's partition."""
    return int(db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
