"""Versioned schema migrations for PostgreSQL and SQLite.

Each step is a module `mNNNN_<slug>.py` in this package holding `TITLE` and
frozen `DDL`, written once and never edited: a later change to the models
gets a new numbered module. `migrate()` applies what is missing,
each step in its own transaction, and is safe to run twice or from two hosts
at once (PostgreSQL serialises them on an advisory lock).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Sequence
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
                postgres = isinstance(database, PostgresqlDatabase)
                for statement in _WHOLE.get((version, postgres), []):
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
