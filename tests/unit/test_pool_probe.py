"""The PostgreSQL pool skips its `SELECT 1` check-out probe for a connection just checked in."""

from __future__ import annotations

from typing import Any

import peewee
import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS

from engine.db.connect import open_database
from engine.shortcuts.pool import PROBE_IDLE_S
from tests.factories import make_settings


class FakeConnection:
    """Stands in for a psycopg2 connection: counts the probes sent over it."""

    def __init__(self) -> None:
        self.closed = 0
        self.status = TRANSACTION_STATUS_IDLE
        self.probes = 0
        self.server_version = 150000

    def get_transaction_status(self) -> int:
        return self.status

    def cursor(self) -> FakeConnection:
        return self

    def execute(self, sql: str, params: Any = None) -> None:
        if sql == "SELECT 1":
            self.probes += 1
        elif sql == "ROLLBACK":
            self.status = TRANSACTION_STATUS_IDLE

    def rollback(self) -> None:
        self.status = TRANSACTION_STATUS_IDLE

    def close(self) -> None:
        self.closed = 1


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Any:
    connections: list[FakeConnection] = []

    def connect(self: Any) -> FakeConnection:
        connections.append(FakeConnection())
        return connections[-1]

    monkeypatch.setattr(peewee.PostgresqlDatabase, "_connect", connect)
    settings = make_settings(HOOKLINE_DATABASE_URL="postgresql://u@127.0.0.1:5432/x")
    database = open_database(settings)
    database.clock = clock.monotonic
    database.fakes = connections
    return database


def cycle(pool: Any) -> FakeConnection:
    pool.connect()
    connection: FakeConnection = pool.connection()
    pool.close()
    return connection


def test_a_connection_checked_in_a_moment_ago_is_handed_out_unprobed(
    pool: Any, clock: Clock
) -> None:
    first = cycle(pool)
    clock.now += PROBE_IDLE_S / 2

    again = cycle(pool)

    assert again is first
    assert first.probes == 0


def test_a_connection_idle_for_longer_is_probed_first(pool: Any, clock: Clock) -> None:
    first = cycle(pool)
    clock.now += PROBE_IDLE_S

    assert cycle(pool) is first
    assert first.probes == 1


def test_a_closed_connection_is_never_handed_out(pool: Any, clock: Clock) -> None:
    first = cycle(pool)
    first.closed = 2  # the server went away

    assert cycle(pool) is not first
    assert len(pool.fakes) == 2


def test_a_connection_left_in_a_transaction_is_not_reused_unprobed(pool: Any, clock: Clock) -> None:
    pool.connect()
    first: FakeConnection = pool.connection()
    pool.close()
    first.status = TRANSACTION_STATUS_INTRANS

    again = cycle(pool)

    assert again is first
    assert first.status == TRANSACTION_STATUS_IDLE, "the pool rolled it back before reuse"


def test_a_probe_idle_of_zero_probes_every_check_out_as_peewee_does(
    pool: Any, clock: Clock
) -> None:
    pool.probe_idle_s = 0

    first = cycle(pool)
    assert cycle(pool) is first

    assert first.probes == 1
