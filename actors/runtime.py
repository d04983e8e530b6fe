"""What the actors of one process share: settings, publisher, HTTP client.

Set once per process by `actors.worker.setup` (or the embedded runner); the
HTTP client is opened on the AsyncIO middleware's event loop as the worker boots.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from engine import __version__
from engine.deliveries.client import ClientOptions, DeliveryClient, open_session
from engine.deliveries.fanout import EndpointMemo
from engine.secretbox import SecretBox
from engine.secretbox import from_settings as secretbox_from_settings
from engine.settings import Settings
from engine.ssrf import AddressPolicy

if TYPE_CHECKING:
    from actors.broker import Publisher
    from actors.pipeline import Pipeline
    from actors.supervise import OutcomeReporter

USER_AGENT = f"Hookline/{__version__}"
# Open connections per worker process, whatever the attempts in flight: attempts beyond
# it (most of them waiting on a hanging endpoint's per-host limit) hold no socket.
MAX_CONNECTIONS = 512


@dataclass
class Runtime:
    """The per-process collaborators of the actors."""

    settings: Settings
    database: Any
    publisher: Publisher
    client: DeliveryClient | None = field(default=None)
    # Opens endpoint secrets to sign with; built from the settings when not given.
    secretbox: SecretBox | None = field(default=None, repr=False)
    # Batches attempt outcomes for the supervisor; None where no deliveries run.
    outcomes: OutcomeReporter | None = field(default=None, repr=False)
    # Sends and records the attempts in flight; opened with the client.
    pipeline: Pipeline | None = field(default=None, repr=False)
    # Endpoint models the fan-outs of this process built, reused while their rows are unchanged.
    endpoints: EndpointMemo = field(default_factory=EndpointMemo, repr=False)

    def __post_init__(self) -> None:
        if self.secretbox is None:
            self.secretbox = secretbox_from_settings(self.settings)

    @property
    def box(self) -> SecretBox:
        """The secret box, never None after construction."""
        assert self.secretbox is not None
        return self.secretbox


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    """Install the collaborators for this process."""
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    """The installed collaborators.

    Raises:
        RuntimeError: the process was not set up.
    """
    if _runtime is None:
        raise RuntimeError("actors.runtime is not set up in this process")
    return _runtime


def client_options(settings: Settings) -> ClientOptions:
    """The delivery client's limits from the settings."""
    return ClientOptions(
        connect_timeout_s=settings.connect_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        max_response_bytes=settings.max_response_bytes,
        max_connections=min(settings.worker_max_in_flight, MAX_CONNECTIONS),
        max_connections_per_host=settings.max_connections_per_host,
        policy=AddressPolicy(
            allow_private=settings.dangerous_allow_private_networks,
            allow_cidrs=settings.allowed_cidrs,
        ),
    )


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
        from actors import delivery
        from actors import pipeline as attempts
        from engine.deliveries import record as deliveries

        runtime = current()
        settings = runtime.settings
        options = client_options(settings)

        async def open_client() -> DeliveryClient:
            return DeliveryClient(open_session(options), options)

        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "the AsyncIO middleware must come first"
        runtime.client = loop_thread.run_coroutine(open_client())

        def record(pairs: Any) -> Any:
            return deliveries.record_many(
                pairs, schedule=settings.retry_schedule_s, max_age_s=settings.max_age_s
            )

        runtime.pipeline = attempts.Pipeline(
            record=record,
            after_record=delivery.after_record,
            connection=runtime.database.connection_context,
            handoff_s=settings.deliver_handoff_s,
            max_in_flight=settings.worker_max_in_flight,
            max_in_flight_bytes=settings.worker_max_in_flight_bytes,
        )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        runtime = _runtime
        loop_thread = get_event_loop_thread()
        if runtime is None or runtime.client is None or loop_thread is None:
            return
        if runtime.pipeline is not None:
            runtime.pipeline.drain(runtime.settings.request_timeout_s + 5.0)
        session = runtime.client.session

        async def close() -> None:
            await session.close()
            await asyncio.sleep(0)

        loop_thread.run_coroutine(close())
        runtime.client = None


class DatabaseConnections(Middleware):
    """Drops the parent's database connections in each forked worker process."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if _runtime is not None and hasattr(_runtime.database, "dispose"):
            _runtime.database.dispose()
