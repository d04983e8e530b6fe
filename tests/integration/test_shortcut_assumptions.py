"""What `engine.shortcuts` rests on in peewee and psycopg2, checked on a real PostgreSQL.

Each shortcut overrides or calls something its library does not promise. Should
an upgrade rename, re-sign or stop calling it, a test here fails by name,
before a benchmark (or production) finds out. tests/integration/test_lazy_begin.py
and test_copy_rows.py check what the shortcuts store and send.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any

import peewee
import psycopg2.extensions
import pytest
from playhouse.pool import PooledDatabase

from engine.db.connect import open_database
from engine.db.models import Tenant, db
from engine.ids import new_id
from engine.shortcuts import ShortcutPool
from engine.shortcuts import copy_rows as copy_by_shortcut
from tests.factories import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


def parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.fixture
def pool(pg_migrated: str) -> Iterator[Any]:
    """The pool `open_database` builds for the run's PostgreSQL, the models bound to it."""
    database = open_database(make_settings(HOOKLINE_DATABASE_URL=pg_migrated))
    saved = db.obj
    db.initialize(database)
    yield database
    db.initialize(saved)
    database.close_all()


def test_the_pool_is_the_shortcut_pool_on_peewees_postgresql_pool(pool: Any) -> None:
    assert isinstance(pool, ShortcutPool)
    assert isinstance(pool, peewee.PostgresqlDatabase) and isinstance(pool, PooledDatabase)
    assert isinstance(pool._adapter, peewee.Psycopg2Adapter), "the probe reads psycopg2's status"


# --- the check-out probe skip -------------------------------------------------------------


def test_the_pool_hooks_the_probe_skip_overrides_keep_their_signatures() -> None:
    empty = inspect.Parameter.empty
    assert parameters(PooledDatabase._is_closed) == [("self", empty), ("conn", empty)]
    assert parameters(PooledDatabase._close) == [
        ("self", empty),
        ("conn", empty),
        ("close_conn", False),
    ]


def test_the_pool_lock_is_reentrant_and_the_adapter_reads_an_idle_connection(pool: Any) -> None:
    # `ShortcutPool._close` holds the lock while playhouse's `_close` takes it again.
    assert isinstance(pool._pool_lock, type(threading.RLock()))
    with pool.connection_context():
        conn = pool.connection()
        assert pool._adapter.txn_status(conn) == pool._adapter.txn_idle
        assert pool._adapter.txn_idle == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_peewee_still_probes_at_check_out_and_the_skip_still_spares_a_fresh_one(
    pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[Any] = []
    probe = pool._adapter.is_connection_closed

    def counting(conn: Any) -> bool:
        probes.append(conn)
        return bool(probe(conn))

    monkeypatch.setattr(pool._adapter, "is_connection_closed", counting)
    pool.probe_idle_s = 0.2

    with pool.connection_context():
        first = pool.connection()
    with pool.connection_context():
        assert pool.connection() is first
    assert probes == [], "checked in a moment ago: handed out unprobed"
    time.sleep(0.25)
    with pool.connection_context():
        assert pool.connection() is first
    assert probes == [first], "idle past the bound: peewee's probe ran at check-out"


# --- the lazy BEGIN -----------------------------------------------------------------------


def test_the_methods_the_lazy_begin_overrides_keep_their_signatures() -> None:
    empty = inspect.Parameter.empty
    base = peewee.PostgresqlDatabase
    assert parameters(base.begin) == [("self", empty), ("isolation_level", None)]
    assert parameters(base.commit) == [("self", empty)]
    assert parameters(base.rollback) == [("self", empty)]
    assert parameters(base.cursor) == [("self", empty), ("named_cursor", None)]
    assert parameters(base.execute_sql) == [("self", empty), ("sql", empty), ("params", None)]
    assert [name for name, _ in parameters(base._execute_cursor)][:3] == ["self", "sql", "params"]


def test_a_transaction_reaches_the_server_through_begin_and_peewees_state(pool: Any) -> None:
    calls: list[str] = []
    begin = pool.begin

    def counting_begin(*args: Any, **kwargs: Any) -> None:
        calls.append("begin")
        begin(*args, **kwargs)

    pool.begin = counting_begin
    with pool.connection_context():
        assert pool._state.transactions == [] and pool._state.closed is False
        with db.atomic():
            assert len(pool._state.transactions) == 1
            assert pool._state.owes_begin is True, "BEGIN owed, not sent"
            Tenant.insert(id=new_id("ten"), name="assumed").execute()
            assert pool._state.owes_begin is False
    assert calls == ["begin"], "peewee's atomic() opens its transaction with begin()"


# --- COPY ---------------------------------------------------------------------------------


def tenant_row(name: str) -> dict[str, Any]:
    return {"id": new_id("ten"), "name": name, "created_at": Tenant.created_at.default()}


def test_psycopg2_copies_with_copy_expert_and_counts_the_rows(pool: Any) -> None:
    rows = [tenant_row(f"copied {n}") for n in range(3)]
    with pool.connection_context():
        assert callable(pool.cursor().copy_expert)
        assert copy_by_shortcut(pool, Tenant, rows) == 3
        assert Tenant.select().where(Tenant.id.in_([r["id"] for r in rows])).count() == 3


def test_a_copy_conflict_is_peewees_integrity_error(pool: Any) -> None:
    row = tenant_row("once")
    with pool.connection_context():
        copy_by_shortcut(pool, Tenant, [row])
        with pytest.raises(peewee.IntegrityError):
            copy_by_shortcut(pool, Tenant, [row])
