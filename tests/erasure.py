"""What a deleted tenant left behind: every text column of every table in the database, searched.

Tables are read from the database's own catalogue (`information_schema` on PostgreSQL,
`sqlite_master` on SQLite), not from the models, so a table added later is searched too.
The one row allowed to name an erased tenant is the admin's record of its deletion
(`audit_log` with a null `tenant_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from peewee import PostgresqlDatabase

_ADMIN_RECORD = "NOT (tenant_id IS NULL AND action = 'DELETE /v1/tenants/{tenant_id}')"


def text_columns(database: Any) -> dict[str, list[str]]:
    """Every table, with its columns that can hold an id (text, JSON), from the catalogue."""
    if isinstance(database, PostgresqlDatabase):
        rows = database.execute_sql(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
            " AND data_type IN ('character varying', 'text', 'jsonb', 'json')"
        ).fetchall()
    else:
        tables = [
            r[0]
            for r in database.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        ]
        rows = [
            (table, column[1])
            for table in tables
            for column in database.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
            if column[2].upper().startswith(("VARCHAR", "TEXT", "CHAR", "JSON"))
        ]
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def leftovers(database: Any, ids: Iterable[str]) -> dict[str, int]:
    """Rows per table that still hold one of `ids` in any text column (in JSON too)."""
    wanted = sorted(set(ids))
    postgres = isinstance(database, PostgresqlDatabase)
    left: dict[str, int] = {}
    for table, columns in text_columns(database).items():
        if postgres:
            tests = " OR ".join(f'"{c}"::text LIKE ANY(%s)' for c in columns)
            params: list[Any] = [[f"%{i}%" for i in wanted]] * len(columns)
        else:
            tests = " OR ".join(
                f'instr(CAST("{c}" AS TEXT), ?) > 0' for c in columns for _ in wanted
            )
            params = [i for _ in columns for i in wanted]
        where = f"({tests})" + (f" AND {_ADMIN_RECORD}" if table == "audit_log" else "")
        count = database.execute_sql(f'SELECT COUNT(*) FROM "{table}" WHERE {where}', params)
        n = int(count.fetchone()[0])
        if n:
            left[table] = n
    return left
