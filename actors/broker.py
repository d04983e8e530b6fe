"""Builds the broker from `Settings` and publishes with confirms.

`actors.registry` declares the actors on it.

RabbitMQ when `HOOKLINE_BROKER_URL` is set; otherwise dramatiq's in-process
`StubBroker`, for the embedded single-process mode.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from actors import queues
from actors.messages import OutcomeRecord
from actors.middleware.policy import Quarantine, require
from engine.settings import Settings

# The actors whose messages carry a list of ids (up to `deliver_batch`); one id still works.
BATCHED_KINDS = frozenset({"fan_out", "deliver"})


def connection_url(settings: Settings, *, publisher: bool) -> str:
    """The broker URL with heartbeat, blocked-publisher and connect bounds added."""
    assert settings.broker_url is not None
    parts = urlsplit(settings.broker_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(settings.broker_heartbeat_s))
    query.setdefault("blocked_connection_timeout", str(settings.broker_blocked_timeout_s))
    query.setdefault("connection_attempts", "1" if publisher else "3")
    query.setdefault("retry_delay", "1")
    query.setdefault("socket_timeout", "5")
    query.setdefault("stack_timeout", "10")
    return urlunsplit(parts._replace(query=urlencode(query)))


def build_broker(settings: Settings, middleware: list[Middleware]) -> dramatiq.Broker:
    """A broker for a process that runs actors: RabbitMQ, or the in-process one.

    The composition root adds the middleware bound to its runtime
    (`broker.add_middleware`), and emits `process_boot` on the in-process
    broker itself; dramatiq's CLI emits it for RabbitMQ.
    """
    if settings.broker_url is None:
        return StubBroker(middleware=middleware)
    return queues.Broker(
        settings,
        url=connection_url(settings, publisher=False),
        confirm_delivery=True,
        middleware=middleware,
    )


def worker_middleware(settings: Settings) -> list[Middleware]:
    """Dramatiq's middleware of a process that runs actors, in order."""
    return [
        AgeLimit(),
        TimeLimit(time_limit=int((settings.request_timeout_s + 60) * 1000)),
        ShutdownNotifications(),
        # Short, in-process retries for transient faults (the database restarting); the
        # scheduler's lease sweep is the backstop for anything these cannot save.
        Retries(max_retries=5, min_backoff=500, max_backoff=30_000),
        CurrentMessage(),
        AsyncIO(),
    ]


class Publisher:
    """Publishes actor messages (ids only) and answers whether the broker confirmed.

    The actors are found on the broker by name (`kind`), once they are declared.
    """

    def __init__(self, broker: dramatiq.Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self._quarantine_declared = False

    def enqueue(self, kind: str, ident: str) -> bool:
        """Publish `kind(ident)`; True once the broker confirmed it."""
        self.broker.get_actor(kind).send(ident)
        return True

    def report_outcomes(self, outcomes: list[OutcomeRecord]) -> None:
        """Publish one batch of attempt outcomes to the supervisor; raise if it fails."""
        self.broker.get_actor("supervise").send([record.to_json() for record in outcomes])

    def enqueue_many(self, kind: str, idents: list[str], **options: Any) -> int:
        """Publish several; stop at the first failure and answer how many were confirmed.

        `deliver` and `fan_out` messages carry up to `deliver_batch` ids each;
        the other actors take one id per message. `options` are the actor's keyword
        arguments, the same for every message.
        """
        actor = self.broker.get_actor(kind)
        batched = kind in BATCHED_KINDS
        size = self.settings.deliver_batch if batched else 1
        confirmed = 0
        for start in range(0, len(idents), size):
            chunk = idents[start : start + size]
            try:
                actor.send(chunk if batched else chunk[0], **options)
            except Exception:  # noqa: BLE001 - the caller's lease covers the rest
                return confirmed
            confirmed += len(chunk)
        return confirmed

    def publish_quarantine(self, documents: list[bytes]) -> int:
        """Copy quarantine documents to the queue the broker's `Quarantine` middleware names.

        Answers how many were confirmed. The in-process broker has no such queue:
        there the delivery rows are the whole quarantine.

        Raises:
            LookupError: the broker has no `Quarantine` middleware.
        """
        if not isinstance(self.broker, RabbitmqBroker):
            return len(documents)
        quarantine = require(self.broker, Quarantine)
        properties = pika.BasicProperties(
            delivery_mode=2, content_type="application/json", type="hookline.quarantined"
        )
        count = 0
        try:
            channel = self.broker.channel
            if not self._quarantine_declared:
                if not quarantine.declare(channel, self.settings):
                    del self.broker.channel  # RabbitMQ closed it: the queue has other arguments
                    channel = self.broker.channel
                self._quarantine_declared = True
            for body in documents:
                channel.basic_publish(
                    "", quarantine.queue_name, body, properties=properties, mandatory=True
                )
                count += 1
        except pika.exceptions.AMQPError:
            del self.broker.connection  # the next call opens a fresh connection
            self._quarantine_declared = False
        return count

    def ping(self) -> None:
        """Raise unless the broker accepts a connection now."""
        if self.settings.broker_url is None:
            return
        params = pika.URLParameters(connection_url(self.settings, publisher=True))
        pika.BlockingConnection(params).close()
