"""Open the database a `Settings` names and bind the models to it."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from engine.models import db
from engine.settings import Settings

# Errors that mean "the database is not reachable now", not "this query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    peewee.OperationalError,
    peewee.InterfaceError,
)


def open_database(settings: Settings) -> Any:
    """A pooled PostgreSQL or a WAL-mode SQLite database; not yet connected."""
    url = settings.effective_database_url
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return _sqlite(parts.path)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    options.setdefault("connect_timeout", 5)
    return PooledPostgresqlDatabase(
        unquote(parts.path.lstrip("/")) or "postgres",
        max_connections=settings.db_max_connections,
        stale_timeout=300,
        timeout=settings.db_pool_timeout_s,
        host=parts.hostname,
        port=parts.port or 5432,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **options,
    )


def _sqlite(path: str) -> peewee.SqliteDatabase:
    if path.startswith("//"):  # sqlite:////abs/path
        path = path[1:]
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return peewee.SqliteDatabase(
        path,
        pragmas={
            "journal_mode": "wal",
            "busy_timeout": 15000,
            "foreign_keys": 1,
            "synchronous": "normal",
        },
        timeout=15,
        check_same_thread=False,
        lock_type="IMMEDIATE",
    )


def bind(settings: Settings) -> Any:
    """Open the configured database and point the models at it."""
    database = open_database(settings)
    db.initialize(database)
    return database


def is_postgres(database: Any) -> bool:
    """True for PostgreSQL, whose locking the scheduler relies on."""
    return isinstance(database, peewee.PostgresqlDatabase)
