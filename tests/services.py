"""The shared PostgreSQL and RabbitMQ, as tests use them: a database and a vhost
of their own each, dropped afterwards. Never reconfigures the services."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import quote

import pytest

PG_ADMIN_DSN = os.environ.get("HOOKLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("HOOKLINE_TEST_AMQP_HOST", "127.0.0.1:5672")
# RabbitMQ's management HTTP API (`rabbitmq-plugins enable rabbitmq_management`; .ci/run does).
AMQP_MANAGEMENT = os.environ.get("HOOKLINE_TEST_AMQP_MANAGEMENT", "http://127.0.0.1:15672")
RUN_ID = uuid.uuid4().hex[:10]


def queue_type() -> str:
    """The RabbitMQ queue type this run's stacks declare (`--queue-type`, tests/conftest.py)."""
    return os.environ.get("HOOKLINE_TEST_QUEUE_TYPE", "classic")


def unavailable(what: str, why: str) -> NoReturn:
    """Skip locally, fail under CI."""
    message = f"{what} unavailable: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: integration tests may not be skipped)")
    pytest.skip(message)


@contextlib.contextmanager
def new_database(suffix: str = "") -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover
        unavailable("PostgreSQL", str(exc))
    name = f"hookline_test_{RUN_ID}{suffix}"
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


@contextlib.contextmanager
def new_vhost(suffix: str = "") -> Iterator[str]:
    """A fresh RabbitMQ vhost (guest has every permission), deleted afterwards."""
    import pika

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("RabbitMQ", "rabbitmqctl not found")
    vhost = f"hookline-test-{RUN_ID}{suffix}"
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
        yield vhost
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def amqp_url_for(vhost: str, host: str = AMQP_HOST) -> str:
    return f"amqp://guest:guest@{host}/{quote(vhost, safe='')}"


def management_queues(vhost: str) -> dict[str, dict[str, Any]]:
    """The vhost's queues as the management UI shows them, read through its HTTP API as
    guest: name, consumers, messages (refreshed every few seconds), arguments."""
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(
        f"{AMQP_MANAGEMENT}/api/queues/{quote(vhost, safe='')}",
        headers={"Authorization": f"Basic {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            rows = json.load(response)
    except (urllib.error.URLError, OSError) as exc:
        unavailable("RabbitMQ's management API", f"{AMQP_MANAGEMENT}: {exc}")
    return {row["name"]: row for row in rows}
