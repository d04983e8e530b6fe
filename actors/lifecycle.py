"""What a process that runs actors opens as it boots and closes as it stops.

Dramatiq middleware: `DatabaseConnections` (dropped after the fork),
`Outcomes` (the reporter flushed last), `HttpClient` (the aiohttp session and
the attempt pipeline, drained first).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from actors import runtime
from actors.outcomes import report_attempt
from actors.pipeline import Pipeline
from engine.deliveries import record as deliveries
from engine.deliveries.client import DeliveryClient, open_session


class HttpClient(Middleware):
    """Opens the process's aiohttp session and attempt pipeline; drains and closes them.

    Comes after `Outcomes` in the middleware list, so that at shutdown (dramatiq
    runs the `after_` hooks in reverse) the attempts still in flight are
    recorded and reported before the outcome reporter flushes, and all of it
    before the AsyncIO middleware stops the event loop.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start, so that no message finds the client missing;
        # the AsyncIO middleware, earlier in the list, has started the event loop.
        rt = runtime.current()
        settings = rt.settings
        options = runtime.client_options(settings)

        async def open_client() -> DeliveryClient:
            return DeliveryClient(open_session(options), options)

        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "the AsyncIO middleware must come first"
        rt.client = loop_thread.run_coroutine(open_client())

        def record(pairs: Any) -> Any:
            return deliveries.record_many(
                pairs, schedule=settings.retry_schedule_s, max_age_s=settings.max_age_s
            )

        rt.pipeline = Pipeline(
            record=record,
            after_record=functools.partial(report_attempt, rt.outcomes),
            connection=rt.database.connection_context,
            handoff_s=settings.deliver_handoff_s,
            max_in_flight=settings.worker_max_in_flight,
            max_in_flight_bytes=settings.worker_max_in_flight_bytes,
        )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        rt = runtime._runtime
        loop_thread = get_event_loop_thread()
        if rt is None or rt.client is None or loop_thread is None:
            return
        if rt.pipeline is not None:
            rt.pipeline.drain(rt.settings.request_timeout_s + 5.0)
        session = rt.client.session

        async def close() -> None:
            await session.close()
            await asyncio.sleep(0)

        loop_thread.run_coroutine(close())
        rt.client = None


class DatabaseConnections(Middleware):
    """Drops the parent's database connections in each forked worker process."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        rt = runtime._runtime
        if rt is not None and hasattr(rt.database, "dispose"):
            rt.database.dispose()


class Outcomes(Middleware):
    """Flushes the process's outcome reporter once the worker's threads are done."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        reporter = runtime.current().outcomes
        if reporter is not None:
            reporter.stop()
