"""What a process that runs actors opens as it boots and closes as it stops.

Dramatiq middleware, each handed what it manages by the composition root:
`DatabaseConnections` (the parent's dropped after the fork), `Outcomes` (the
reporter, flushed last), `HttpClient` (the aiohttp session on the AsyncIO
middleware's loop) and `Attempts` (the attempt pipeline, drained first).
Dramatiq runs the `before_` hooks in list order and the `after_` hooks in
reverse: listed in that order after `AsyncIO`, the attempts still in flight
at shutdown are recorded and reported before the reporter flushes, and all
of it before the event loop stops.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from actors.flow import FlowRecorder
from actors.middleware import DeliveryPolicy
from actors.outcomes import OutcomeReporter, report_attempt
from actors.pipeline import Pipeline
from actors.runtime import Runtime, client_options
from engine.deliveries.client import DeliveryClient, open_session

# Seconds a stopping worker gives its attempts in flight beyond the request timeout.
DRAIN_MARGIN_S = 5.0
# A host's share of a crowded pipeline, in connections to it (`actors.pipeline.share`):
# four answers' time of waiting in its gate, at most.
HOST_SHARE_PER_CONNECTION = 4


class DatabaseConnections(Middleware):
    """Drops the parent's database connections in each forked worker process."""

    def __init__(self, database: Any) -> None:
        self.database = database

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if hasattr(self.database, "dispose"):
            self.database.dispose()


class Outcomes(Middleware):
    """Flushes the process's outcome reporter once the worker's threads are done."""

    def __init__(self, reporter: OutcomeReporter) -> None:
        self.reporter = reporter

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.reporter.stop()


class HttpClient(Middleware):
    """Opens the runtime's aiohttp session on the AsyncIO middleware's loop; closes it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start, so that no message finds the client missing.
        options = client_options(self.runtime.settings)

        async def open_client() -> DeliveryClient:
            return DeliveryClient(open_session(options), options)

        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "the AsyncIO middleware must come first"
        self.runtime.loop = loop_thread.loop
        self.runtime.client = loop_thread.run_coroutine(open_client())

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        client = self.runtime.client
        if client is None or loop_thread is None:
            return
        session = client.session

        async def close() -> None:
            await session.close()
            await asyncio.sleep(0)

        loop_thread.run_coroutine(close())
        self.runtime.client = None


class Attempts(Middleware):
    """Opens the runtime's attempt pipeline as the worker boots; drains it as it stops.

    The pipeline records each attempt with what the broker's delivery policy
    (`actors.middleware.DeliveryPolicy`) decides, in the same transaction.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        settings = self.runtime.settings
        policy = DeliveryPolicy.on(broker)
        self.runtime.pipeline = Pipeline(
            record=FlowRecorder(settings, self.runtime.publisher, policy.decide),
            after_record=functools.partial(report_attempt, self.runtime.outcomes),
            connection=self.runtime.database.connection_context,
            handoff_s=settings.deliver_handoff_s,
            max_in_flight=settings.worker_max_in_flight,
            max_in_flight_bytes=settings.worker_max_in_flight_bytes,
            host_share=HOST_SHARE_PER_CONNECTION * settings.max_connections_per_host,
        )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.runtime.pipeline is not None:
            self.runtime.pipeline.drain(self.runtime.settings.request_timeout_s + DRAIN_MARGIN_S)
