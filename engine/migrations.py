"""Versioned schema migrations for PostgreSQL and SQLite.

Each migration is frozen DDL, written once and never edited: a later change
to the models gets a new numbered step. `migrate()` applies what is missing,
each step in its own transaction, and is safe to run twice or from two hosts
at once (PostgreSQL serialises them on an advisory lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from peewee import PostgresqlDatabase

from engine.errors import MigrationError
from engine.models import utcnow

log = structlog.get_logger(__name__)

_LOCK_KEY = 0x486F6F6B  # "Hook": the advisory lock migrators queue on

# {json}: JSONB on PostgreSQL, TEXT on SQLite; {ts}: a UTC timestamp.
_V1 = """
CREATE TABLE tenant (
    id VARCHAR(40) PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    created_at {ts} NOT NULL
);
CREATE TABLE api_key (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key_hash VARCHAR(128) NOT NULL UNIQUE,
    prefix VARCHAR(16) NOT NULL,
    scopes {json} NOT NULL,
    created_at {ts} NOT NULL,
    revoked_at {ts}
);
CREATE INDEX api_key_tenant_id ON api_key (tenant_id);
CREATE TABLE endpoint (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT,
    event_types {json} NOT NULL,
    headers {json} NOT NULL,
    metadata {json} NOT NULL,
    retry_schedule {json},
    secret TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    disabled_reason TEXT,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    deleted_at {ts}
);
CREATE INDEX endpoint_tenant_id ON endpoint (tenant_id, id);
CREATE TABLE event (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    event_type VARCHAR(128) NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key VARCHAR(255),
    created_at {ts} NOT NULL,
    fanned_out_at {ts},
    fan_out_lease_until {ts}
);
CREATE INDEX event_tenant_id ON event (tenant_id, id);
CREATE UNIQUE INDEX event_idempotency ON event (tenant_id, idempotency_key);
CREATE INDEX event_unfanned ON event (fan_out_lease_until) WHERE fanned_out_at IS NULL;
CREATE TABLE delivery (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    event_id VARCHAR(40) NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    endpoint_id VARCHAR(40) NOT NULL REFERENCES endpoint (id) ON DELETE CASCADE,
    event_type VARCHAR(128) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {ts},
    lease_until {ts},
    last_attempt_at {ts},
    last_status_code INTEGER,
    last_error TEXT,
    quarantine_reason TEXT,
    event_created_at {ts} NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL
);
CREATE UNIQUE INDEX delivery_event_endpoint ON delivery (event_id, endpoint_id);
CREATE INDEX delivery_tenant_id ON delivery (tenant_id, id);
CREATE INDEX delivery_endpoint ON delivery (endpoint_id, status);
CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX delivery_lease ON delivery (lease_until)
    WHERE status IN ('pending', 'queued', 'delivering');
CREATE TABLE attempt (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    delivery_id VARCHAR(40) NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at {ts} NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    status_code INTEGER,
    outcome VARCHAR(16) NOT NULL,
    error_class VARCHAR(32),
    error_detail TEXT,
    response_body TEXT,
    response_body_truncated BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX attempt_delivery_number ON attempt (delivery_id, number);
"""

MIGRATIONS: Sequence[tuple[int, str, str]] = (
    (1, "tenants, keys, endpoints, events, deliveries", _V1),
)


def _render(ddl: str, database: Any) -> list[str]:
    postgres = isinstance(database, PostgresqlDatabase)
    text = ddl.format(json="JSONB" if postgres else "TEXT", ts="TIMESTAMP")
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def current_version(database: Any) -> int:
    """The highest applied migration, 0 on an empty database."""
    if "schema_version" not in database.get_tables():
        return 0
    row = database.execute_sql("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def latest_version() -> int:
    """The version `migrate()` brings a database to."""
    return MIGRATIONS[-1][0]


def migrate(database: Any) -> list[int]:
    """Apply every missing migration; answer the versions applied.

    Raises:
        MigrationError: the database is newer than this code, or a step failed.
    """
    postgres = isinstance(database, PostgresqlDatabase)
    with database.connection_context():
        if postgres:
            database.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _apply_missing(database)
        finally:
            if postgres:
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply_missing(database: Any) -> list[int]:
    with database.atomic():
        database.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
        )
    have = current_version(database)
    if have > latest_version():
        raise MigrationError(
            f"database is at version {have}, this Hookline knows {latest_version()}"
        )
    applied = []
    for version, title, ddl in MIGRATIONS:
        if version <= have:
            continue
        try:
            with database.atomic():
                for statement in _render(ddl, database):
                    database.execute_sql(statement)
                mark = database.param
                database.execute_sql(
                    f"INSERT INTO schema_version (version, applied_at) VALUES ({mark}, {mark})",
                    (version, utcnow()),
                )
        except Exception as exc:
            raise MigrationError(f"migration {version} ({title}) failed: {exc}") from exc
        log.info("migration_applied", version=version, title=title)
        applied.append(version)
    return applied
