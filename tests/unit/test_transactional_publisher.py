"""`actors.transactional`: the API's messages published in shared AMQP transactions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import dramatiq
import pika.exceptions
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed

from actors.transactional import ATTEMPTS, TransactionalPublisher


class FakeChannel:
    """A transactional channel: publishes wait for `tx_commit`; some queues return them."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.is_open = True
        self.pending: list[tuple[str, bytes, Any]] = []
        self.on_return: Callable[..., None] | None = None
        self.undispatched: list[bytes] = []
        self.transactional = False

    def tx_select(self) -> None:
        self.transactional = True

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        self.on_return = callback

    def basic_publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, mandatory: bool
    ) -> None:
        assert self.transactional and mandatory and exchange == ""
        self.server.fail("publish")
        self.pending.append((routing_key, body, properties))

    def tx_commit(self) -> None:
        self.server.fail("commit")
        for queue, body, properties in self.pending:
            if queue in self.server.missing:
                self.undispatched.append(body)
            else:
                self.server.stored.append((queue, body, properties))
        self.pending = []
        self.server.commits += 1


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.is_open = True
        self.opened: FakeChannel | None = None

    def channel(self) -> FakeChannel:
        self.opened = FakeChannel(self.server)
        return self.opened

    def process_data_events(self, time_limit: float | None = None) -> None:
        channel = self.opened
        assert channel is not None and channel.on_return is not None
        for body in channel.undispatched:
            channel.on_return(channel, None, None, body)
        channel.undispatched = []

    def close(self) -> None:
        self.is_open = False


class FakeServer:
    """What RabbitMQ kept, which queues are missing, and faults to inject."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, bytes, Any]] = []
        self.commits = 0
        self.connections: list[FakeConnection] = []
        self.missing: set[str] = set()
        self.faults: list[str] = []

    def fail(self, step: str) -> None:
        if self.faults and self.faults[0] == step:
            self.faults.pop(0)
            raise pika.exceptions.StreamLostError("connection reset")

    def connect(self) -> FakeConnection:
        self.connections.append(FakeConnection(self))
        return self.connections[-1]


class FakeBroker:
    """The parts of dramatiq's RabbitmqBroker the publisher uses."""

    def __init__(self, actors: dramatiq.Broker) -> None:
        self.get_actor = actors.get_actor  # the actors, declared on a broker of their own
        self.queues_pending: set[str] = set()
        self.declared: list[str] = []
        self.enqueued: list[str] = []

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        assert ensure
        self.declared.append(queue_name)
        self.queues_pending.discard(queue_name)

    def emit_before(self, signal: str, *args: Any) -> None:
        assert signal == "enqueue"

    def emit_after(self, signal: str, message: Any, delay: Any) -> None:
        self.enqueued.append(message.message_id)


def noop(ident: str) -> None: ...


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def with_actors() -> StubBroker:
    """A broker on which `fan_out` and `verify_endpoint` are declared."""
    stub = StubBroker()
    dramatiq.actor(noop, broker=stub, actor_name="fan_out", queue_name="hookline.fan_out")
    dramatiq.actor(noop, broker=stub, actor_name="verify_endpoint", queue_name="hookline.verify")
    return stub


@pytest.fixture
def publisher(server: FakeServer) -> TransactionalPublisher:
    return TransactionalPublisher(FakeBroker(with_actors()), connect=server.connect)  # type: ignore[arg-type]


def sent(server: FakeServer) -> list[tuple[str, str, list[Any]]]:
    return [
        (queue, json.loads(body)["actor_name"], json.loads(body)["args"])
        for queue, body, _ in server.stored
    ]


def test_a_message_is_committed_before_enqueue_answers(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    assert publisher.enqueue("fan_out", "evt_1") is True

    assert sent(server) == [("hookline.fan_out", "fan_out", ["evt_1"])]
    assert server.commits == 1
    properties = server.stored[0][2]
    assert properties.delivery_mode == 2, "persistent, as dramatiq publishes"


def test_messages_are_dramatiqs_own(publisher: TransactionalPublisher, server: FakeServer) -> None:
    publisher.enqueue("verify_endpoint", "ep_1")

    body = json.loads(server.stored[0][1])
    assert {"queue_name", "actor_name", "args", "kwargs", "options", "message_id"} <= set(body)
    assert body["queue_name"] == "hookline.verify"
    assert publisher.broker.enqueued == [body["message_id"]]  # type: ignore[attr-defined]


def test_one_connection_serves_every_commit(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    for n in range(3):
        publisher.enqueue("fan_out", f"evt_{n}")

    assert len(server.connections) == 1
    assert server.commits == 3


def test_a_message_returned_unroutable_answers_false_and_its_queue_is_declared_again(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    server.missing.add("hookline.fan_out")

    assert publisher.enqueue("fan_out", "evt_1") is False
    assert "hookline.fan_out" in publisher.broker.queues_pending

    server.missing.clear()
    assert publisher.enqueue("fan_out", "evt_2") is True
    assert publisher.broker.declared[-1] == "hookline.fan_out"  # type: ignore[attr-defined]


@pytest.mark.parametrize("step", ["publish", "commit"])
def test_a_dropped_connection_is_replaced_and_the_batch_tried_again(
    publisher: TransactionalPublisher, server: FakeServer, step: str
) -> None:
    server.faults = [step]

    assert publisher.enqueue("fan_out", "evt_1") is True

    assert len(server.connections) == 2
    assert not server.connections[0].is_open
    assert sent(server) == [("hookline.fan_out", "fan_out", ["evt_1"])]


def test_rabbitmq_out_of_reach_raises_after_the_retry(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    server.faults = ["commit"] * ATTEMPTS

    with pytest.raises(ConnectionClosed):
        publisher.enqueue("fan_out", "evt_1")

    assert server.stored == []
    assert publisher.enqueue("fan_out", "evt_2") is True, "the next publish reconnects"


def test_fan_out_ids_committed_together_share_one_message(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    # What GroupCommit hands the publisher when five requests publish during one commit.
    items = [("fan_out", ("evt_1",)), ("verify_endpoint", ("ep_1",)), ("fan_out", ("evt_2",))]
    items += [("fan_out", ("evt_3",)), ("verify_endpoint", ("ep_2",))]

    assert publisher._publish(items) == [True] * 5

    assert sorted(sent(server)) == [
        ("hookline.fan_out", "fan_out", [["evt_1", "evt_2", "evt_3"]]),
        ("hookline.verify", "verify_endpoint", ["ep_1"]),
        ("hookline.verify", "verify_endpoint", ["ep_2"]),
    ]
    assert server.commits == 1


def test_a_shared_message_carries_at_most_batch_ids(server: FakeServer) -> None:
    publisher = TransactionalPublisher(
        FakeBroker(with_actors()),  # type: ignore[arg-type]
        connect=server.connect,  # type: ignore[arg-type]
        batch=2,
    )

    assert publisher._publish([("fan_out", (f"evt_{n}",)) for n in range(5)]) == [True] * 5

    assert [args for _, _, args in sent(server)] == [
        [["evt_0", "evt_1"]],
        [["evt_2", "evt_3"]],
        ["evt_4"],
    ]


def test_every_id_of_a_returned_shared_message_answers_false(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    server.missing.add("hookline.fan_out")

    answers = publisher._publish([("fan_out", ("evt_1",)), ("verify_endpoint", ("ep_1",))])
    answers += publisher._publish([("fan_out", ("evt_2",)), ("fan_out", ("evt_3",))])

    assert answers == [False, True, False, False]


def test_an_unknown_kind_is_refused_before_anything_is_published(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    with pytest.raises(ValueError, match="no actor"):
        publisher.enqueue("fan_in", "evt_1")

    assert server.commits == 0


def test_enqueue_many_sends_the_ids_in_one_message_and_answers_for_them_all(
    publisher: TransactionalPublisher, server: FakeServer
) -> None:
    assert publisher.enqueue_many("fan_out", ["evt_1", "evt_2"]) is True
    assert publisher.enqueue_many("verify_endpoint", ["ep_1", "ep_2"]) is True
    assert publisher.enqueue_many("fan_out", []) is True

    assert sent(server) == [
        ("hookline.fan_out", "fan_out", [["evt_1", "evt_2"]]),
        ("hookline.verify", "verify_endpoint", ["ep_1"]),
        ("hookline.verify", "verify_endpoint", ["ep_2"]),
    ]
    assert server.commits == 2


def test_ids_split_over_messages_answer_false_if_any_of_them_was_returned(
    server: FakeServer,
) -> None:
    publisher = TransactionalPublisher(
        FakeBroker(with_actors()),  # type: ignore[arg-type]
        connect=server.connect,  # type: ignore[arg-type]
        batch=2,
    )
    server.missing.add("hookline.verify")

    assert publisher._publish([("fan_out", ("e1", "e2", "e3")), ("verify_endpoint", ("p1",))]) == [
        True,
        False,
    ]
    assert [args for _, _, args in sent(server)] == [[["e1", "e2"]], ["e3"]]
