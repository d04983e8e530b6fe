"""Open the database a `Settings` names and bind the models to it."""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from engine.db.models import db
from engine.settings import Settings

# Errors that mean "the database is not reachable now", not "this query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    peewee.OperationalError,
    peewee.InterfaceError,
)


# A connection checked back in less than this long ago skips the check-out probe.
PROBE_IDLE_S = 1.0


class _Pool(PooledPostgresqlDatabase):
    """The pool, minus a round trip per check-out for a connection that was just in use.

    peewee probes every connection it hands out with `SELECT 1`; under load that
    was a third of the database round trips an ingest made. A connection checked
    in within `PROBE_IDLE_S`, idle and not closed is handed out unprobed. The
    cost: if the server goes away inside that second, the first statement on such
    a connection fails (a 503, retried by the client) instead of the pool
    quietly opening a new one, and the broken connection is dropped on check-in.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked_in: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def _is_closed(self, conn: Any) -> bool:
        checked_in = self._checked_in.pop(conn, None)
        if (
            checked_in is not None
            and time.monotonic() - checked_in < PROBE_IDLE_S
            and not conn.closed
            and self._adapter.txn_status(conn) == self._adapter.txn_idle
        ):
            return False
        return bool(super()._is_closed(conn))

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        with self._pool_lock:  # the lock `_is_closed` runs under, at check-out
            if not close_conn:
                self._checked_in[conn] = time.monotonic()
            super()._close(conn, close_conn)

    # A transaction's BEGIN travels with its first statement ------------------------
    #
    # peewee sends BEGIN on its own, so every transaction cost one round trip more than
    # its statements. Under load a round trip is a wait for PostgreSQL's process and then
    # for the GIL: the fan-out's transaction took 25-40 ms at the lag scenario's half
    # load, with five of them. Here `begin()` only notes that BEGIN is owed; the
    # transaction's first statement is sent as "BEGIN; <statement>" (one simple query,
    # whose result is the statement's), a caller taking a cursor of its own (COPY) gets
    # the BEGIN sent first, and a transaction that ran nothing commits without a word.

    def begin(self, isolation_level: Any = None) -> None:
        if isolation_level is not None or self._isolation_level:
            super().begin(isolation_level)
            return
        if self.is_closed() and not self.autoconnect:
            super().begin()  # raises as peewee does: no connection is open
        if self.is_closed():
            self.connect()
        self._state.owes_begin = True

    def commit(self) -> None:
        if self._take_owed_begin():
            return  # nothing ran: there is nothing to commit
        super().commit()

    def rollback(self) -> None:
        if self._take_owed_begin():
            return
        super().rollback()

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self._take_owed_begin() and self._in_open_transaction():
            sql = "BEGIN; " + sql
        return self._execute_cursor(sql, params)

    def cursor(self, named_cursor: Any = None) -> Any:
        if self._take_owed_begin() and self._in_open_transaction():
            super().cursor().execute("BEGIN")
        return super().cursor()

    def _take_owed_begin(self) -> bool:
        """Whether `begin()` was called and BEGIN not sent since; forgets it."""
        state = self._state
        owed = bool(getattr(state, "owes_begin", False))
        state.owes_begin = False
        return owed

    def _in_open_transaction(self) -> bool:
        # A BEGIN owed by a transaction that is over (its connection closed under it)
        # is dropped, not sent ahead of an unrelated statement.
        return bool(self._state.transactions) and not self._state.closed


def open_database(settings: Settings) -> Any:
    """A pooled PostgreSQL or a WAL-mode SQLite database; not yet connected."""
    url = settings.effective_database_url
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return _sqlite(parts.path)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    options.setdefault("connect_timeout", 5)
    return _Pool(
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


def insert_rows(
    model: type[peewee.Model], rows: Sequence[Mapping[str, Any]], *, skip_conflicts: bool = False
) -> int:
    """INSERT rows (dicts with the same keys) in one statement; answer how many went in.

    What `Model.insert_many(rows)` (with `.on_conflict_ignore()` when
    `skip_conflicts`) does, for the hot paths
    (fan-out, attempts): peewee builds that SQL node by node, which costs more
    CPU than the round trip itself. Values still go through each field's
    `db_value`, so they are stored exactly as peewee would store them.
    """
    if not rows:
        return 0
    meta: Any = model._meta
    names = list(rows[0])
    fields = [meta.fields[name] for name in names]
    database = (
        meta.database.obj if isinstance(meta.database, peewee.DatabaseProxy) else meta.database
    )
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
    """Store rows (dicts with the same keys) with one COPY; answer how many went in.

    What `insert_rows(model, rows)` stores, at well under half its CPU on
    both sides: psycopg2 adapts each value of a multi-row INSERT separately
    and PostgreSQL parses every literal; here each row becomes one line of
    COPY's text format. A conflict fails the whole COPY, as it fails the
    INSERT. Anything this cannot write exactly as the INSERT would (another
    database, a column type not below, an aware datetime, a NUL) goes the
    `insert_rows` way instead, with its errors.
    """
    if not rows:
        return 0
    meta: Any = model._meta
    database = _database_of(meta)
    if not is_postgres(database):
        return insert_rows(model, rows)
    plan = _copy_plan(model, tuple(rows[0]))
    if plan is None:
        return insert_rows(model, rows)
    statement, encoders = plan
    try:
        lines = ["\t".join([encode(row[name]) for name, encode in encoders]) for row in rows]
    except _NotCopyable:
        return insert_rows(model, rows)
    with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
        cursor = database.cursor()
        cursor.copy_expert(statement, io.StringIO("\n".join(lines) + "\n"))
    return int(cursor.rowcount)


class _NotCopyable(Exception):
    """A value COPY's text format would not store exactly as an INSERT does."""


_NULL = "\\N"
# COPY's text format gives these a meaning; NUL cannot be stored in text at all.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not str or "\x00" in value:
        raise _NotCopyable(type(value).__name__)
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_int(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not int:
        raise _NotCopyable(type(value).__name__)
    return str(value)


def _copy_float(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) not in (float, int):
        raise _NotCopyable(type(value).__name__)
    return repr(float(value))


def _copy_bool(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not bool:
        raise _NotCopyable(type(value).__name__)
    return "t" if value else "f"


def _copy_timestamp(value: Any) -> str:
    if value is None:
        return _NULL
    # An aware datetime would be converted by the session's time zone; naive UTC is stored.
    if type(value) is not dt.datetime or value.tzinfo is not None:
        raise _NotCopyable(type(value).__name__)
    return str(value)


# Field class -> how COPY's text format spells its values. Only these exact classes: a
# subclass (JSONField is a TextField) may convert values its own way, so it goes by INSERT.
_COPY_ENCODERS: dict[type[peewee.Field], Callable[[Any], str]] = {
    peewee.BooleanField: _copy_bool,
    peewee.IntegerField: _copy_int,
    peewee.BigIntegerField: _copy_int,
    peewee.SmallIntegerField: _copy_int,
    peewee.FloatField: _copy_float,
    peewee.DoubleField: _copy_float,
    peewee.DateTimeField: _copy_timestamp,
    peewee.CharField: _copy_text,
    peewee.TextField: _copy_text,
}


@functools.cache
def _copy_plan(
    model: type[peewee.Model], names: tuple[str, ...]
) -> tuple[str, list[tuple[str, Callable[[Any], str]]]] | None:
    """The COPY statement and each column's encoder, or None if a column has none."""
    meta: Any = model._meta
    encoders = []
    for name in names:
        field = meta.fields[name]
        encode = _COPY_ENCODERS.get(type(field))
        if encode is None:
            return None
        encoders.append((name, encode))
    columns = ", ".join(f'"{meta.fields[name].column_name}"' for name in names)
    return f'COPY "{meta.table_name}" ({columns}) FROM STDIN', encoders


def _database_of(meta: Any) -> Any:
    database = meta.database
    return database.obj if isinstance(database, peewee.DatabaseProxy) else database
