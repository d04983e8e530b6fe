"""The database boundary: a database out of reach raises UnavailableError, chained from peewee's."""

from __future__ import annotations

import socket
from typing import Any

import peewee
import pytest

from engine.db.connect import UNAVAILABLE_ERRORS, open_database
from engine.db.models import Tenant, db
from engine.errors import EngineError, UnavailableError
from tests.factories import make_settings


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable() -> Any:
    """A PostgreSQL pool whose server refuses every connection, the models bound to it."""
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/hookline"
    database = open_database(make_settings(HOOKLINE_DATABASE_URL=url))
    saved = db.obj
    db.initialize(database)
    yield database
    db.initialize(saved)


def test_a_refused_connection_raises_unavailable_error_from_peewees(unreachable: Any) -> None:
    with pytest.raises(UnavailableError) as caught:
        unreachable.connect()

    assert isinstance(caught.value, EngineError)
    assert isinstance(caught.value.__cause__, peewee.OperationalError)
    assert "refused" in str(caught.value)


def test_a_connection_context_and_a_transaction_raise_it_too(unreachable: Any) -> None:
    with pytest.raises(UnavailableError), unreachable.connection_context():
        pass
    with pytest.raises(UnavailableError), db.atomic():
        Tenant.insert(id="ten_x", name="x").execute()


def test_a_query_that_opens_the_connection_itself_raises_it(unreachable: Any) -> None:
    with pytest.raises(UnavailableError):
        Tenant.select().count()


def test_the_callers_catching_unavailable_errors_still_catch_it(unreachable: Any) -> None:
    with pytest.raises(UNAVAILABLE_ERRORS):
        unreachable.execute_sql("SELECT 1")


def test_a_locked_sqlite_database_is_unavailable_too(tmp_path: Any) -> None:
    settings = make_settings(HOOKLINE_DATA_DIR=str(tmp_path))
    holder, waiter = open_database(settings), open_database(settings)
    waiter.init(waiter.database, timeout=0.05, pragmas={"busy_timeout": 50})
    with holder.atomic():
        holder.execute_sql("CREATE TABLE t (x INTEGER)")
        with pytest.raises(UnavailableError, match="locked"), waiter.atomic():
            waiter.execute_sql("CREATE TABLE u (x INTEGER)")
