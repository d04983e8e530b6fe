"""The API's publisher: the messages of concurrent requests committed together to RabbitMQ.

`Publisher.enqueue` waits for one publisher confirm per message, each thread on a
connection of its own, a cost per event that full ingest felt
(ops/bench/NOTES.md#transactional-publisher). Here the request threads of an API
process share one channel in AMQP transaction mode: whichever thread publishes while
no commit is running publishes every message queued so far and commits them at once
(`engine.db.batching.GroupCommit`); the others wait for that commit.

What a caller is told is unchanged: True only once RabbitMQ has taken
responsibility for its message. RabbitMQ sends `tx.commit-ok` only when every
message of the transaction is routed and, for persistent messages on durable
queues, stored, as it would have sent each confirm; a message returned as
unroutable (its queue deleted) answers False, and its queue is declared again
on the next publish. Caveat, from RabbitMQ's own issue tracker: a quorum queue
with a `reject-publish` length limit may drop a message yet commit the
transaction; Hookline's queues have no length limit.

The `fan_out` ids of one commit travel in one message (up to `batch` ids):
RabbitMQ stores, and a worker consumes, one message where it took one per
event, and the worker fans the events out in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import q_name
from dramatiq.errors import ActorNotFound, ConnectionClosed

from actors.broker import BATCHED_KINDS, Publisher
from engine.db.batching import GroupCommit

# A connection RabbitMQ dropped (idle past its heartbeat, a restart) is noticed on use:
# one more try on a new connection. A commit lost with its connection may have gone
# through, so a retried message can arrive twice; fan-out and delivery are idempotent.
ATTEMPTS = 2
_BROKER_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


class TransactionalPublisher:
    """Publishes `kind(ident)` messages in transactions shared by concurrent threads.

    The ids of a batched kind (`fan_out`, `deliver`) committed together share
    messages of up to `batch` ids; a lone id is sent bare.
    """

    def __init__(
        self,
        broker: RabbitmqBroker,
        connect: Callable[[], pika.BlockingConnection] | None = None,
        *,
        batch: int = 50,
    ) -> None:
        self.broker = broker
        self.connect = connect or (lambda: pika.BlockingConnection(broker.parameters))
        self.batch = batch
        self._group: GroupCommit[tuple[str, tuple[str, ...]], bool] = GroupCommit(self._publish)
        # Only the thread leading a commit touches these (GroupCommit runs one at a time).
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._returned: set[bytes] = set()

    @classmethod
    def sharing(cls, publisher: Publisher) -> TransactionalPublisher:
        """One publishing through the broker (and its actors) of a RabbitMQ `Publisher`."""
        if not isinstance(publisher.broker, RabbitmqBroker):
            raise TypeError("transactions need RabbitMQ; the in-process broker has none")
        return cls(publisher.broker, batch=publisher.settings.deliver_batch)

    def enqueue(self, kind: str, ident: str) -> bool:
        """Publish `kind(ident)`; True once RabbitMQ committed it.

        Raises:
            dramatiq.errors.ConnectionClosed: RabbitMQ cannot be reached.
        """
        return self.enqueue_many(kind, [ident])

    def enqueue_many(self, kind: str, idents: list[str]) -> bool:
        """Publish `kind` for each id; True once RabbitMQ committed them all.

        The ids of a batched kind travel in as few messages as `batch` allows.

        Raises:
            dramatiq.errors.ConnectionClosed: RabbitMQ cannot be reached.
        """
        try:
            self.broker.get_actor(kind)
        except ActorNotFound:
            raise ValueError(f"no actor {kind!r}") from None
        if not idents:
            return True
        return self._group.submit((kind, tuple(idents)))

    def close(self) -> None:
        """Close the connection, if one is open."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is going away either way
                pass

    def _publish(self, items: list[tuple[str, tuple[str, ...]]]) -> list[bool]:
        messages, carriers = self._messages(items)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                kept = self._commit(messages)
                return [all(kept[index] for index in indices) for indices in carriers]
            except _BROKER_ERRORS as exc:
                self.close()
                if attempt == ATTEMPTS:
                    raise ConnectionClosed(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _messages(
        self, items: list[tuple[str, tuple[str, ...]]]
    ) -> tuple[list[dramatiq.Message[Any]], list[set[int]]]:
        """The messages that carry the items, and for each item the indices of its messages."""
        messages: list[dramatiq.Message[Any]] = []
        carriers: list[set[int]] = [set() for _ in items]
        batched: dict[str, list[tuple[int, str]]] = {}
        for position, (kind, idents) in enumerate(items):
            if kind in BATCHED_KINDS:
                batched.setdefault(kind, []).extend((position, ident) for ident in idents)
                continue
            actor = self.broker.get_actor(kind)
            for ident in idents:
                carriers[position].add(len(messages))
                messages.append(actor.message(ident))
        for kind, owned in batched.items():
            actor = self.broker.get_actor(kind)
            for start in range(0, len(owned), self.batch):
                chunk = owned[start : start + self.batch]
                for position, _ident in chunk:
                    carriers[position].add(len(messages))
                carried = [ident for _position, ident in chunk]
                messages.append(actor.message(carried[0] if len(carried) == 1 else carried))
        return messages, carriers

    def _commit(self, messages: list[dramatiq.Message[Any]]) -> list[bool]:
        """Publish the messages in one transaction; answer which RabbitMQ kept."""
        channel = self._open_channel()
        bodies = []
        for message in messages:
            self.broker.declare_queue(message.queue_name, ensure=True)
            self.broker.emit_before("enqueue", message, None)
            body = message.encode()
            properties = pika.BasicProperties(
                delivery_mode=2, priority=message.options.get("broker_priority")
            )
            channel.basic_publish("", message.queue_name, body, properties, mandatory=True)
            bodies.append(body)
        channel.tx_commit()
        if self._connection is not None:
            # Returns arrive before commit-ok; this hands them to `_on_return` now.
            self._connection.process_data_events(time_limit=0)
        returned, self._returned = self._returned, set()
        kept = [body not in returned for body in bodies]
        for message, ok in zip(messages, kept, strict=True):
            if ok:
                self.broker.emit_after("enqueue", message, None)
            else:
                self.broker.queues_pending.add(q_name(message.queue_name))
        return kept

    def _open_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._connection = self.connect()
        channel = self._connection.channel()
        channel.tx_select()
        channel.add_on_return_callback(self._on_return)
        self._channel = channel
        return channel

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._returned.add(body)
