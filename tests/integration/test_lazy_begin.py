"""The pool's transactions on PostgreSQL: BEGIN goes with the first statement, and still holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2.extensions
import pytest

from engine.db.connect import bind, copy_rows
from engine.db.models import Tenant, db
from engine.ids import new_id
from tests.factories import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
INTRANS = psycopg2.extensions.TRANSACTION_STATUS_INTRANS


@pytest.fixture
def pg(pg_migrated: str) -> Iterator[Any]:
    """The run's PostgreSQL database, bound to the models, on one connection of this thread."""
    database = bind(make_settings(HOOKLINE_DATABASE_URL=pg_migrated))
    with database.connection_context():
        yield database
    database.close_all()


def server_status(database: Any) -> int:
    """Whether the server holds a transaction open on this thread's connection."""
    return int(database.connection().info.transaction_status)


def sent(database: Any) -> list[str]:
    """Record every statement the connection sends from now on (psycopg2's notices aside)."""
    statements: list[str] = []
    plain = type(database).cursor

    def cursor(self: Any, named_cursor: Any = None) -> Any:
        real = plain(self, named_cursor)

        class Recording:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def execute(self, sql: str, params: Any = None) -> Any:
                statements.append(sql)
                return real.execute(sql, params)

            def copy_expert(self, sql: str, data: Any) -> Any:
                statements.append(sql)
                return real.copy_expert(sql, data)

        return Recording()

    database.cursor = cursor.__get__(database)
    return statements


def tenant_row() -> dict[str, Any]:
    return {"id": new_id("ten"), "name": "lazy", "created_at": Tenant.created_at.default()}


def test_the_first_statement_carries_begin(pg: Any) -> None:
    statements = sent(pg)
    row = tenant_row()
    with db.atomic():
        assert server_status(pg) == IDLE  # nothing sent yet
        Tenant.insert(row).execute()
        assert server_status(pg) == INTRANS
        assert Tenant.select().where(Tenant.id == row["id"]).count() == 1
    assert server_status(pg) == IDLE
    assert statements[0].startswith("BEGIN; INSERT")
    assert not any(sql == "BEGIN" for sql in statements)
    assert statements[-1] == "COMMIT"
    assert Tenant.get_by_id(row["id"]).name == "lazy"


def test_a_failure_still_rolls_everything_back(pg: Any) -> None:
    first, second = tenant_row(), tenant_row()
    with pytest.raises(RuntimeError), db.atomic():
        Tenant.insert(first).execute()
        Tenant.insert(second).execute()
        raise RuntimeError("after two inserts")
    assert Tenant.select().where(Tenant.id.in_([first["id"], second["id"]])).count() == 0
    assert server_status(pg) == IDLE


def test_a_statement_that_fails_first_leaves_the_connection_usable(pg: Any) -> None:
    row = tenant_row()
    Tenant.insert(row).execute()
    with pytest.raises(Exception, match="duplicate key"), db.atomic():
        Tenant.insert(row).execute()  # "BEGIN; INSERT" fails in its second part
    assert server_status(pg) == IDLE
    with db.atomic():
        assert Tenant.select().where(Tenant.id == row["id"]).count() == 1


def test_a_transaction_that_ran_nothing_sends_nothing(pg: Any) -> None:
    statements = sent(pg)
    with db.atomic():
        pass
    with pytest.raises(RuntimeError), db.atomic():
        raise RuntimeError("before any statement")
    assert statements == []
    assert server_status(pg) == IDLE
    assert pg.connection().notices == []  # no "there is no transaction in progress"


def test_copy_as_the_first_statement_is_inside_the_transaction(pg: Any) -> None:
    statements = sent(pg)
    row = tenant_row()
    with pytest.raises(RuntimeError), db.atomic():
        assert copy_rows(Tenant, [row]) == 1
        assert server_status(pg) == INTRANS
        raise RuntimeError("undo the COPY")
    assert [sql.split()[0] for sql in statements] == ["COPY", "ROLLBACK"]  # BEGIN went first
    assert not Tenant.select().where(Tenant.id == row["id"]).exists()


def test_a_savepoint_first_then_a_commit_midway(pg: Any) -> None:
    kept, undone, later = tenant_row(), tenant_row(), tenant_row()
    with db.atomic() as outer:
        with pytest.raises(RuntimeError), db.atomic():  # a savepoint opens the transaction
            Tenant.insert(undone).execute()
            raise RuntimeError("undo the savepoint")
        Tenant.insert(kept).execute()
        outer.commit()  # commits, and owes the next transaction's BEGIN
        assert server_status(pg) == IDLE
        Tenant.insert(later).execute()
        outer.rollback()
    ids = {t.id for t in Tenant.select().where(Tenant.name == "lazy")}
    assert kept["id"] in ids
    assert undone["id"] not in ids
    assert later["id"] not in ids


def test_outside_a_transaction_statements_go_alone(pg: Any) -> None:
    statements = sent(pg)
    row = tenant_row()
    Tenant.insert(row).execute()
    assert statements == [statements[0]]
    assert statements[0].startswith("INSERT")
    assert server_status(pg) == IDLE
