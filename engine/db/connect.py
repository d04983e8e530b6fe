"""Open the database a `Settings` names, bind the models to it, and write rows in bulk.

This is the database boundary: a connection that cannot be opened, or that
fails under a statement, a BEGIN, a COMMIT or a ROLLBACK, raises
`engine.errors.UnavailableError`, chained from peewee's error. The pool's
performance shortcuts live in `engine.shortcuts`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from engine import shortcuts
from engine.db.models import db
from engine.errors import UnavailableError
from engine.settings import Settings

# Errors that mean "the database is not reachable now", not "this query is wrong". The
# databases `open_database` opens raise UnavailableError; peewee's own two still come
# from a cursor read after its statement, or from a database opened elsewhere.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    UnavailableError,
    peewee.OperationalError,
    peewee.InterfaceError,
)


@contextlib.contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Raise UnavailableError, chained, for peewee's connection and operational errors."""
    try:
        yield
    except (peewee.OperationalError, peewee.InterfaceError) as exc:
        raise UnavailableError(str(exc).strip() or type(exc).__name__) from exc


class _Boundary:
    """Where a database's connection failures surface, each becomes an UnavailableError."""

    def connect(self, reuse_if_open: bool = False) -> bool:
        with unavailable_on_failure():
            return bool(super().connect(reuse_if_open))  # type: ignore[misc]

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        with unavailable_on_failure():
            return super().execute_sql(sql, params)  # type: ignore[misc]

    def cursor(self, named_cursor: Any = None) -> Any:
        with unavailable_on_failure():
            return super().cursor(named_cursor)  # type: ignore[misc]

    def begin(self, *args: Any, **kwargs: Any) -> None:
        with unavailable_on_failure():
            super().begin(*args, **kwargs)  # type: ignore[misc]

    def commit(self) -> None:
        with unavailable_on_failure():
            super().commit()  # type: ignore[misc]

    def rollback(self) -> None:
        with unavailable_on_failure():
            super().rollback()  # type: ignore[misc]


class _Postgres(_Boundary, shortcuts.ShortcutPool):
    """Pooled PostgreSQL, with the shortcuts, behind the boundary."""


class _Sqlite(_Boundary, peewee.SqliteDatabase):
    """The embedded SQLite database, behind the boundary."""


def open_database(settings: Settings) -> Any:
    """A pooled PostgreSQL or a WAL-mode SQLite database; not yet connected."""
    url = settings.effective_database_url
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return _sqlite(parts.path)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    options.setdefault("connect_timeout", 5)
    return _Postgres(
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
    return _Sqlite(
        path,
        pragmas={
            "journal_mode": "wal",
            "busy_timeout": 15000,
            "foreign_keys": 1,
            # Every commit reaches the disk before it returns, so a 202 survives a power cut
            # too; in WAL mode "normal" survives a crash of the process only.
            "synchronous": "full",
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


def insert_rows(
    model: type[peewee.Model], rows: Sequence[Mapping[str, Any]], *, skip_conflicts: bool = False
) -> int:
    """INSERT rows (dicts with the same keys) in one statement; answer how many went in.

    What `Model.insert_many(rows)` (with `.on_conflict_ignore()` when
    `skip_conflicts`) does, for the hot paths (fan-out, attempts), without
    peewee building the SQL node by node (ops/bench/NOTES.md#copy). Values
    still go through each field's `db_value`, so they are stored exactly as
    peewee would store them.
    """
    if not rows:
        return 0
    meta: Any = model._meta
    names = list(rows[0])
    fields = [meta.fields[name] for name in names]
    database = _database_of(meta)
    placeholders = "(" + ", ".join([database.param] * len(names)) + ")"
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    sql = (
        f'INSERT INTO "{meta.table_name}" ({columns}) VALUES '
        + ", ".join([placeholders] * len(rows))
        + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
    )
    params = [field.db_value(row[field.name]) for row in rows for field in fields]
    return int(database.execute_sql(sql, params).rowcount)


def copy_rows(model: type[peewee.Model], rows: Sequence[Mapping[str, Any]]) -> int:
    """Store rows (dicts with the same keys) as `insert_rows` does; answer how many went in.

    On a database that `copies` (the PostgreSQL pool), with one COPY
    (`engine.shortcuts.copy`); rows COPY would not store exactly as an INSERT
    does, and every other database, go the `insert_rows` way, with its errors.
    A conflict fails the whole COPY, as it fails the INSERT.

    Raises:
        UnavailableError: the database cannot be reached.
        peewee.IntegrityError: a row conflicts with a stored one.
    """
    if not rows:
        return 0
    database = _database_of(model._meta)
    if getattr(database, "copies", False):
        with unavailable_on_failure():
            copied = shortcuts.copy_rows(database, model, rows)
        if copied is not None:
            return copied
    return insert_rows(model, rows)


def _database_of(meta: Any) -> Any:
    database = meta.database
    return database.obj if isinstance(database, peewee.DatabaseProxy) else database
