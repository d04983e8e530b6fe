"""Shared fixtures: settings, an embedded SQLite database, and, for integration
tests, a PostgreSQL database and a RabbitMQ vhost unique to this run.

Integration tests skip when PostgreSQL or RabbitMQ is down, except under `CI`,
where they fail: CI must never go green by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from engine.database import bind
from engine.migrations import migrate
from engine.settings import Settings
from tests.factories import make_settings

PG_ADMIN_DSN = os.environ.get("HOOKLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("HOOKLINE_TEST_AMQP_HOST", "127.0.0.1:5672")
RUN_ID = uuid.uuid4().hex[:10]


def unavailable(what: str, why: str) -> None:
    """Skip locally, fail under CI."""
    message = f"{what} unavailable: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: integration tests may not be skipped)")
    pytest.skip(message)


@pytest.fixture
def sqlite_settings(tmp_path: Any) -> Settings:
    return make_settings(HOOKLINE_DATA_DIR=str(tmp_path / "var"))


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Iterator[Any]:
    """A migrated SQLite database bound to the models, connected on this thread."""
    database = bind(sqlite_settings)
    migrate(database)
    database.connect(reuse_if_open=True)
    yield database
    if not database.is_closed():
        database.close()


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover
        unavailable("PostgreSQL", str(exc))
    name = f"hookline_test_{RUN_ID}"
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).strip())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this run, deleted afterwards."""
    import pika

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("RabbitMQ", "rabbitmqctl not found")
    vhost = f"hookline-test-{RUN_ID}"
    try:
        pika.BlockingConnection(
            pika.URLParameters(f"amqp://guest:guest@{AMQP_HOST}/%2F?socket_timeout=3")
        ).close()
    except Exception as exc:  # noqa: BLE001
        unavailable("RabbitMQ", f"{type(exc).__name__}: {exc}")
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}/{quote(vhost, safe='')}"
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pg_migrated(pg_url: str) -> str:
    """The run's PostgreSQL database, migrated once."""
    database = bind(make_settings(HOOKLINE_DATABASE_URL=pg_url))
    migrate(database)
    database.close_all()
    return pg_url
