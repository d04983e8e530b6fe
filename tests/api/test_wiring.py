"""The actors' collaborators are handed in by the composition root, never looked up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO

from actors import worker
from actors.lifecycle import Attempts, HttpClient, Outcomes
from actors.registry import declare_actors
from engine.settings import Settings


class Database:
    """A stand-in database that counts the connections the actors take."""

    def __init__(self) -> None:
        self.connections = 0

    @contextlib.contextmanager
    def connection_context(self) -> Iterator[None]:
        self.connections += 1
        yield


def test_two_workers_in_one_process_run_their_actors_on_their_own_collaborators(
    sqlite_settings: Settings, sqlite_db: Any
) -> None:
    first, second = Database(), Database()
    first_broker, first_runtime = worker.build(sqlite_settings, first)
    second_broker, second_runtime = worker.build(sqlite_settings, second)

    first_broker.get_actor("supervise")([])
    first_broker.get_actor("supervise")([])
    second_broker.get_actor("supervise")([])

    assert (first.connections, second.connections) == (2, 1)
    assert first_runtime.database is first and second_runtime.database is second


def test_an_actor_declared_to_publish_only_refuses_to_run() -> None:
    broker = StubBroker()
    declare_actors(broker, None)

    with pytest.raises(RuntimeError, match="only publishes"):
        broker.get_actor("deliver")(["dlv_1"])


def test_the_worker_opens_its_client_and_pipeline_after_the_loop_and_drains_them_first(
    sqlite_settings: Settings,
) -> None:
    broker, _runtime = worker.build(sqlite_settings, Database())
    kinds = [type(m) for m in broker.middleware]

    # `before_` hooks run in this order and `after_` hooks in reverse: the pipeline drains,
    # then the client closes, then the reporter flushes, and only then does the loop stop.
    order = [kinds.index(k) for k in (AsyncIO, Outcomes, HttpClient, Attempts)]
    assert order == sorted(order)
