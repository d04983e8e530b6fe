"""Versioned schema migrations for PostgreSQL and SQLite.

Each step is a module `mNNNN_<slug>.py` in this package holding `TITLE` and
frozen `DDL`, written once and never edited: a later change to the models
gets a new numbered module. `migrate()` applies what is missing,
each step in its own transaction, and is safe to run twice or from two hosts
at once (PostgreSQL serialises them on an advisory lock).

A step that copies rows (`copy_batch`, PostgreSQL only) is resumable: its
DDL and `prepare` commit first, with a row in `schema_progress`; then each
`copy_batch` commits with the cursor it reached; the last transaction runs
`FINISH_POSTGRES`, records the version and forgets the progress. A migrator
killed anywhere in between is resumed where it stopped by the next one.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import structlog
from peewee import PostgresqlDatabase

from engine.db.models import utcnow
from engine.errors import MigrationError

log = structlog.get_logger(__name__)

_LOCK_KEY = 0x486F6F6B  # "Hook": the advisory lock migrators queue on


_STEP = re.compile(r"^m(\d{4})_\w+$")


# Statements a step runs whole after its DDL, per database kind (`POSTGRES`, `SQLITE`):
# function and trigger bodies hold the semicolons `DDL` is split on.
_WHOLE: dict[tuple[int, bool], list[str]] = {}
# The resumable steps' modules, by version: `prepare`, `copy_batch`, `FINISH_POSTGRES`.
_RESUMABLE: dict[int, ModuleType] = {}


def _steps() -> Sequence[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    for module in pkgutil.iter_modules(__path__):
        match = _STEP.match(module.name)
        if match:
            step = importlib.import_module(f"{__name__}.{module.name}")
            found.append((int(match.group(1)), step.TITLE, step.DDL))
            version = int(match.group(1))
            _WHOLE[(version, True)] = list(getattr(step, "POSTGRES", []))
            _WHOLE[(version, False)] = list(getattr(step, "SQLITE", []))
            if hasattr(step, "copy_batch"):
                _RESUMABLE[version] = step
    return sorted(found)


MIGRATIONS = _steps()


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


def migrate(database: Any, *, until: int | None = None) -> list[int]:
    """Apply every missing migration (up to `until`, if given); answer the versions applied.

    Raises:
        MigrationError: the database is newer than this code, or a step failed.
    """
    postgres = isinstance(database, PostgresqlDatabase)
    with database.connection_context():
        if postgres:
            database.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _apply_missing(database, until)
        finally:
            if postgres:
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply_missing(database: Any, until: int | None) -> list[int]:
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
    postgres = isinstance(database, PostgresqlDatabase)
    for version, title, ddl in MIGRATIONS:
        if version <= have or (until is not None and version > until):
            continue
        try:
            if postgres and version in _RESUMABLE:
                _apply_resumable(database, version, ddl, _RESUMABLE[version])
            else:
                with database.atomic():
                    _apply_ddl(database, version, ddl)
                    _mark_applied(database, version)
        except Exception as exc:
            raise MigrationError(f"migration {version} ({title}) failed: {exc}") from exc
        log.info("migration_applied", version=version, title=title)
        applied.append(version)
    return applied


def _apply_ddl(database: Any, version: int, ddl: str) -> None:
    for statement in _render(ddl, database):
        database.execute_sql(statement)
    postgres = isinstance(database, PostgresqlDatabase)
    for statement in _WHOLE.get((version, postgres), []):
        database.execute_sql(statement)


def _mark_applied(database: Any, version: int) -> None:
    mark = database.param
    database.execute_sql(
        f"INSERT INTO schema_version (version, applied_at) VALUES ({mark}, {mark})",
        (version, utcnow()),
    )


def _apply_resumable(database: Any, version: int, ddl: str, step: ModuleType) -> None:
    """A step that copies rows: begun, copied batch by batch, finished; resumed where it was."""
    with database.atomic():
        database.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_progress (version INTEGER PRIMARY KEY, "
            "position TEXT NOT NULL, updated_at TIMESTAMP NOT NULL)"
        )
    position = _progress(database, version)
    if position is None:
        with database.atomic():
            _apply_ddl(database, version, ddl)
            step.prepare(database)
            database.execute_sql(
                "INSERT INTO schema_progress (version, position, updated_at) VALUES (%s, '', %s)",
                (version, utcnow()),
            )
        position = ""
    else:
        log.info("migration_resumed", version=version, position=position)
    _copy_all(database, version, position, step.copy_batch)
    with database.atomic():
        for statement in step.FINISH_POSTGRES:
            database.execute_sql(statement)
        database.execute_sql("DELETE FROM schema_progress WHERE version = %s", (version,))
        _mark_applied(database, version)


def _copy_all(
    database: Any, version: int, position: str, copy_batch: Callable[[Any, str], str | None]
) -> None:
    """Batch after batch, each committed with the position it reached."""
    copied = 0
    while True:
        with database.atomic():
            reached = copy_batch(database, position)
            if reached is None:
                return
            database.execute_sql(
                "UPDATE schema_progress SET position = %s, updated_at = %s WHERE version = %s",
                (reached, utcnow(), version),
            )
        position = reached
        copied += 1
        if copied % 50 == 0:
            log.info("migration_copying", version=version, position=position)


def _progress(database: Any, version: int) -> str | None:
    row = database.execute_sql(
        "SELECT position FROM schema_progress WHERE version = %s", (version,)
    ).fetchone()
    return None if row is None else str(row[0])
