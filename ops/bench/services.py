"""A PostgreSQL database and a RabbitMQ vhost of the benchmark's own, and their versions."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pika
import psycopg2

PG_ADMIN_DSN = os.environ.get("HOOKLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("HOOKLINE_TEST_AMQP_HOST", "127.0.0.1:5672")
RUN_ID = uuid.uuid4().hex[:10]
DATABASE = f"hookline_bench_{RUN_ID}"
VHOST = f"hookline-bench-{RUN_ID}"


class Unavailable(RuntimeError):
    """PostgreSQL or RabbitMQ cannot be reached."""


@contextlib.contextmanager
def new_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards (even on Ctrl-C)."""
    name = DATABASE
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        raise Unavailable(f"PostgreSQL: {str(exc).strip()}") from exc
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def new_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost (guest has every permission), deleted afterwards."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise Unavailable("RabbitMQ: rabbitmqctl not found")
    try:
        pika.BlockingConnection(
            pika.URLParameters(f"amqp://guest:guest@{AMQP_HOST}/%2F?socket_timeout=3")
        ).close()
    except Exception as exc:  # any failure: not reachable
        raise Unavailable(f"RabbitMQ: {type(exc).__name__}: {exc}") from exc
    vhost = VHOST
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield vhost
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def amqp_url_for(vhost: str) -> str:
    """The AMQP URL of a vhost on the benchmark's RabbitMQ."""
    return f"amqp://guest:guest@{AMQP_HOST}/{quote(vhost, safe='')}"


def postgres_version(pg_url: str) -> str:
    """The server's version string."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0])


def rabbitmq_version(amqp_url: str) -> str:
    """The broker's version, as it announces itself on connect."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        props = connection._impl.server_properties  # the only place pika keeps it
        version = props.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        connection.close()


def purge_queues(amqp_url: str, *queues: str) -> None:
    """Drop every ready message of these queues (missing queues are skipped)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        for queue in queues:
            channel = connection.channel()
            try:
                channel.queue_purge(queue)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                continue
    finally:
        connection.close()
