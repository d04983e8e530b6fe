"""Queue types on the real RabbitMQ: what Hookline declares, the delivery limit, a mismatch."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import structlog

from actors.middleware import Quarantine
from actors.queues import QueueMismatchError
from actors.registry import SUPERVISOR_QUEUES, WORKER_QUEUES, check_queues, publisher
from tests.factories import make_settings
from tests.integration.conftest import stack_env
from tests.services import amqp_url_for, new_vhost

# Each test names the queue types it declares: the quorum pass would only repeat them.
pytestmark = [pytest.mark.integration, pytest.mark.own_queue_types]

QUARANTINE = "hookline.quarantine"


@pytest.fixture
def vhost() -> Iterator[str]:
    with new_vhost(f"-q{time.monotonic_ns() % 10**8}") as name:
        yield name


def declared(vhost: str) -> dict[str, tuple[str, str]]:
    """Per queue: (type, arguments), as rabbitmqctl reports them."""
    columns = ("name", "type", "arguments")
    done = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", *columns],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.strip()]
    return {row[0]: (row[1], row[2]) for row in rows}


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_every_queue_hookline_declares_is_of_the_configured_type(
    vhost: str, queue_type: str
) -> None:
    settings = make_settings(
        HOOKLINE_BROKER_URL=amqp_url_for(vhost),
        HOOKLINE_QUEUE_TYPE=queue_type,
        HOOKLINE_QUEUE_DELIVERY_LIMIT="7",
    )

    check_queues(settings)

    queues = declared(vhost)
    expected = {QUARANTINE}
    for name in (*WORKER_QUEUES, *SUPERVISOR_QUEUES):
        expected |= {name, f"{name}.DQ", f"{name}.XQ"}
    assert set(queues) == expected
    assert {kind for kind, _ in queues.values()} == {queue_type}
    limits = {name for name, (_, args) in queues.items() if "x-delivery-limit" in args}
    processed = set(WORKER_QUEUES + SUPERVISOR_QUEUES)  # neither .DQ, .XQ nor the quarantine
    assert limits == (processed if queue_type == "quorum" else set())
    assert all("7" in args for name, (_, args) in queues.items() if name in limits)
    bound = queues[QUARANTINE][1]
    assert "x-max-length" in bound and "drop-head" in bound, "bounded by Hookline, any vhost"


def test_a_message_that_keeps_killing_its_consumer_is_dead_lettered_at_the_delivery_limit(
    vhost: str,
) -> None:
    url = amqp_url_for(vhost)
    settings = make_settings(
        HOOKLINE_BROKER_URL=url, HOOKLINE_QUEUE_TYPE="quorum", HOOKLINE_QUEUE_DELIVERY_LIMIT="2"
    )
    sending = publisher(settings)
    sending.enqueue("deliver", "dlv_poison")
    sending.broker.close()
    queue = "hookline.deliver"

    def take_and_die() -> Any:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        _method, _properties, body = connection.channel().basic_get(queue)
        connection.close()  # no ack: as a worker killed mid-message
        return body

    bodies = [take_and_die() for _ in range(4)]

    assert [body is not None for body in bodies] == [True, True, True, False]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method, properties, body = connection.channel().basic_get(f"{queue}.XQ", auto_ack=True)
    finally:
        connection.close()
    assert method is not None and b"dlv_poison" in body
    assert properties.headers["x-first-death-reason"] == "delivery_limit"


def test_classic_queues_declared_as_quorum_fail_once_saying_how_to_switch(vhost: str) -> None:
    url = amqp_url_for(vhost)
    check_queues(make_settings(HOOKLINE_BROKER_URL=url, HOOKLINE_QUEUE_TYPE="classic"))

    with pytest.raises(QueueMismatchError) as raised:
        check_queues(make_settings(HOOKLINE_BROKER_URL=url, HOOKLINE_QUEUE_TYPE="quorum"))
    assert raised.value.variable == "HOOKLINE_QUEUE_TYPE"
    assert "README: Queue types" in str(raised.value) and "new vhost" in str(raised.value)

    env = stack_env("postgresql://postgres@127.0.0.1:1/none", url, HOOKLINE_QUEUE_TYPE="quorum")
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "HOOKLINE_QUEUE_TYPE: RabbitMQ refused to declare queue" in done.stderr
    assert "inequivalent arg 'x-queue-type'" in done.stderr
    assert declared(vhost)[WORKER_QUEUES[0]][0] == "classic"  # left as it was


def test_a_quarantine_an_older_hookline_declared_unbounded_is_kept_and_still_receives(
    vhost: str,
) -> None:
    url = amqp_url_for(vhost)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare(QUARANTINE, durable=True)  # no arguments, as before
    connection.close()
    settings = make_settings(HOOKLINE_BROKER_URL=url)

    with structlog.testing.capture_logs() as logged:
        check_queues(settings)  # no stop: the queue is there, with other arguments
        sending = publisher(settings, middleware=[Quarantine()])  # as the scheduler's
        published = sending.publish_quarantine([b'{"delivery_id": "dlv_1"}'])
        sending.broker.close()

    assert published == 1
    assert declared(vhost)[QUARANTINE] == ("classic", "[]"), "left as it was"
    warned = [e for e in logged if e["event"] == "quarantine_queue_not_bounded_by_hookline"]
    assert warned and "delete the queue" in warned[0]["fix"]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method, _properties, body = connection.channel().basic_get(QUARANTINE, auto_ack=True)
    finally:
        connection.close()
    assert method is not None and b"dlv_1" in body
