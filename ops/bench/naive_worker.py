"""The naive baseline worker: `requests.post` and one psycopg2 insert + commit per delivery.

Run by `python -m dramatiq ops.bench.naive_worker`; reads BENCH_AMQP_URL and
BENCH_PG_URL. Without `requests` installed it falls back to `urllib.request`,
an equally naive client (a new connection per request), and says so.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from typing import Any

import dramatiq
import psycopg2
from dramatiq.brokers.rabbitmq import RabbitmqBroker

try:
    import requests
except ImportError:  # pragma: no cover - `tox -e bench` installs it
    requests = None

QUEUE = "bench.naive"
TABLE = "bench_naive_delivery"
CLIENT = "requests" if requests is not None else "urllib"

_local = threading.local()


def _connection() -> Any:
    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = psycopg2.connect(os.environ["BENCH_PG_URL"])
        _local.connection = connection
    return connection


def _post(url: str, body: bytes) -> int:
    headers = {"content-type": "application/json"}
    if requests is not None:
        return int(requests.post(url, data=body, headers=headers, timeout=10).status_code)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def naive_deliver(url: str, body: str) -> None:
    """POST the body, then record the delivery with its own commit."""
    status = _post(url, body.encode())
    connection = _connection()
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (url, status_code) VALUES (%s, %s)", (url, status))
    connection.commit()


def declare(broker: dramatiq.Broker) -> dramatiq.Actor[Any, Any]:
    """The baseline actor on a broker."""
    return dramatiq.actor(
        naive_deliver, broker=broker, actor_name="naive_deliver", queue_name=QUEUE
    )


if os.environ.get("BENCH_AMQP_URL") and os.environ.get("BENCH_NAIVE_WORKER") == "1":
    broker = RabbitmqBroker(url=os.environ["BENCH_AMQP_URL"])
    dramatiq.set_broker(broker)
    declare(broker)
