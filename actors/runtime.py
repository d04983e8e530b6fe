"""What the actors of one process share: settings, database, publisher, HTTP client.

Built by the process's composition root (`actors.worker`, `actors.supervisor`,
`api.embedded`) and bound to the actors as they are declared
(`actors.registry`); nothing looks it up globally. The HTTP client, its event
loop and the attempt pipeline are filled in as the worker boots
(`actors.lifecycle`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from actors.broker import Publisher
from actors.outcomes import OutcomeReporter
from actors.pipeline import Pipeline
from engine import __version__
from engine.deliveries.client import ClientOptions, DeliveryClient
from engine.deliveries.fanout import EndpointMemo
from engine.secretbox import SecretBox
from engine.secretbox import from_settings as secretbox_from_settings
from engine.settings import Settings
from engine.ssrf import AddressPolicy

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
    # The event loop the client was opened on, which the AsyncIO middleware runs.
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
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
