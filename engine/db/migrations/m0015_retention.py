"""Retention: daily partitions on PostgreSQL, idempotency keys in a table of their own.

`tenant.retention_days` overrides `HOOKLINE_RETENTION_DAYS` for one tenant.
`event_key` holds each tenant's idempotency keys (one row per key, the event
that took it): a unique index of a partitioned table must hold its partition
key, so the event table itself can no longer keep a key unique per tenant.

On PostgreSQL `event`, `delivery` and `attempt` become range-partitioned by
day (`engine.db.partitions`). A resumable step: the first transaction renames
the old tables `*_unpartitioned`, creates the partitioned ones, a partition
for every day the old rows cover and a few ahead; `copy_batch` then copies
the rows in id order, a batch per transaction, the cursor saved with each
batch (`engine.db.migrations`), so a migrator killed mid-copy is resumed by the
next `hookline migrate`; the last transaction adds the fan-out trigger and
drops the old tables. Hookline must be stopped while it runs (README,
"Operating the data"). The partitioned tables carry no foreign keys: dropping
a referenced partition would have to check every referencing row.

On SQLite the keys are copied to `event_key` and the event's unique index is
dropped; nothing else changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.db import partitions
from engine.ids import id_timestamp_ms

TITLE = "retention: daily partitions, idempotency keys in a table of their own"

DDL = """
ALTER TABLE tenant ADD COLUMN retention_days INTEGER;
CREATE TABLE event_key (
    tenant_id VARCHAR(40) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    event_id VARCHAR(40) NOT NULL,
    created_at {ts} NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
CREATE INDEX event_key_created_at ON event_key (created_at)
"""

SQLITE = [
    """INSERT INTO event_key (tenant_id, idempotency_key, event_id, created_at)
SELECT tenant_id, idempotency_key, id, created_at FROM event WHERE idempotency_key IS NOT NULL""",
    "DROP INDEX event_idempotency",
]

_OLD_INDEXES = (
    "event_tenant_id",
    "event_idempotency",
    "delivery_event_endpoint",
    "delivery_tenant_id",
    "delivery_endpoint",
    "delivery_due",
    "delivery_lease",
    "delivery_quarantine",
    "delivery_quarantine_unpublished",
    "delivery_parked",
    "delivery_throttled",
    "delivery_due_tenant",
    "attempt_delivery_number",
)

POSTGRES = [
    *[f"ALTER TABLE {t} RENAME TO {t}_unpartitioned" for t in ("event", "delivery", "attempt")],
    *[f"ALTER INDEX {t}_pkey RENAME TO {t}_unpartitioned_pkey" for t in ("event", "delivery")],
    "ALTER INDEX attempt_pkey RENAME TO attempt_unpartitioned_pkey",
    *[f"DROP INDEX {index}" for index in _OLD_INDEXES],
    "CREATE TABLE event (LIKE event_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (id)",
    "ALTER TABLE event ADD PRIMARY KEY (id)",
    "CREATE INDEX event_tenant_id ON event (tenant_id, id)",
    "CREATE TABLE delivery (LIKE delivery_unpartitioned INCLUDING DEFAULTS) "
    "PARTITION BY RANGE (id)",
    "ALTER TABLE delivery ADD PRIMARY KEY (id)",
    # Was unique: the fan-out's gate (one caller takes an event) makes a pair once.
    "CREATE INDEX delivery_event_endpoint ON delivery (event_id, endpoint_id)",
    "CREATE INDEX delivery_tenant_id ON delivery (tenant_id, id)",
    "CREATE INDEX delivery_endpoint ON delivery (endpoint_id, status)",
    "CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 'scheduled'",
    "CREATE INDEX delivery_lease ON delivery (lease_until) "
    "WHERE status IN ('pending', 'queued', 'delivering')",
    "CREATE INDEX delivery_quarantine ON delivery (tenant_id, quarantined_at) "
    "WHERE status = 'quarantined'",
    "CREATE INDEX delivery_quarantine_unpublished ON delivery (quarantined_at) "
    "WHERE status = 'quarantined' AND quarantine_published_at IS NULL",
    "CREATE INDEX delivery_parked ON delivery (endpoint_id, id) WHERE status = 'parked'",
    "CREATE INDEX delivery_throttled ON delivery (endpoint_id, event_created_at, event_id) "
    "WHERE status = 'throttled'",
    "CREATE INDEX delivery_due_tenant ON delivery (tenant_id, next_attempt_at) "
    "WHERE status = 'scheduled'",
    "CREATE TABLE attempt (LIKE attempt_unpartitioned INCLUDING DEFAULTS) "
    "PARTITION BY RANGE (delivery_id)",
    "ALTER TABLE attempt ADD PRIMARY KEY (id, delivery_id)",
    "CREATE UNIQUE INDEX attempt_delivery_number ON attempt (delivery_id, number)",
    *partitions.default_statements(),
]

# Run once every row is copied, in the step's last transaction.
FINISH_POSTGRES = [
    """CREATE TRIGGER event_fan_out_pending AFTER INSERT ON event
REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT
EXECUTE FUNCTION event_fan_out_pending()""",
    "DROP TABLE attempt_unpartitioned",
    "DROP TABLE delivery_unpartitioned",
    "DROP TABLE event_unpartitioned",
]

COPY_BATCH = 20_000
# Days created past today by the migration; the scheduler keeps creating them after.
AHEAD_DAYS = 3
_ORDER = ("event", "delivery", "attempt")


def prepare(database: Any) -> None:
    """Create a partition for every day the old rows cover (PostgreSQL, in the first step)."""
    today = dt.datetime.now(dt.UTC).date()
    first = today
    for table in _ORDER:
        key = partitions.PARTITIONED[table][0]
        row = database.execute_sql(f"SELECT MIN({key}) FROM {table}_unpartitioned").fetchone()
        if row[0]:
            first = min(first, _day_of(row[0]))
    days = [first + dt.timedelta(days=n) for n in range((today - first).days + AHEAD_DAYS + 1)]
    partitions.create_days(database, days)


def copy_batch(database: Any, cursor: str) -> str | None:
    """Copy the next batch of old rows; answer the cursor after it, None once all are copied.

    The cursor is `table:last id copied` (empty: not started).
    """
    table, _, after = cursor.partition(":") if cursor else (_ORDER[0], ":", "")
    while True:
        last = _copy_rows(database, table, after)
        if last is not None:
            return f"{table}:{last}"
        position = _ORDER.index(table) + 1
        if position == len(_ORDER):
            return None
        table, after = _ORDER[position], ""


def _copy_rows(database: Any, table: str, after: str) -> str | None:
    """INSERT the next rows of `table` after id `after`; answer the last id, None if none."""
    last = database.execute_sql(
        f"SELECT MAX(id) FROM (SELECT id FROM {table}_unpartitioned WHERE id > %s "
        f"ORDER BY id LIMIT {COPY_BATCH}) AS batch",
        (after,),
    ).fetchone()[0]
    if last is None:
        return None
    database.execute_sql(
        f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned WHERE id > %s AND id <= %s",
        (after, last),
    )
    if table == "event":
        database.execute_sql(
            "INSERT INTO event_key (tenant_id, idempotency_key, event_id, created_at) "
            "SELECT tenant_id, idempotency_key, id, created_at FROM event_unpartitioned "
            "WHERE id > %s AND id <= %s AND idempotency_key IS NOT NULL",
            (after, last),
        )
    return str(last)


def _day_of(ident: str) -> dt.date:
    return dt.datetime.fromtimestamp(id_timestamp_ms(ident) / 1000, dt.UTC).date()
