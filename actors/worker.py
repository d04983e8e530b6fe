"""The worker process's composition root: `dramatiq actors.worker:setup`.

`hookline worker` runs dramatiq's CLI with this callable; each worker process
calls it once to read the settings, bind the database, and build the broker,
its middleware and the actors, all bound to one `Runtime`. `build` is the
same wiring without the process-wide parts; the embedded mode runs it too.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from actors.broker import Publisher, build_broker, worker_middleware
from actors.lifecycle import Attempts, DatabaseConnections, HttpClient, Outcomes
from actors.middleware import DeliveryPolicy
from actors.outcomes import OutcomeReporter
from actors.registry import declare_actors
from actors.runtime import Runtime
from actors.signals import absorb_repeated_stops
from engine import logs
from engine.db.connect import bind
from engine.settings import Settings
from engine.shortcuts.interpreter import freeze_heap, tune_interpreter
from engine.shortcuts.loop import install_event_loop


def setup(settings: Settings | None = None) -> dramatiq.Broker:
    """Build this process's broker, actors and runtime; dramatiq's CLI takes the broker."""
    settings = settings or Settings.from_env()
    absorb_repeated_stops()  # a SIGTERM to the process group is one stop, not "stop now"
    tune_interpreter()
    install_event_loop(settings.event_loop)  # before the AsyncIO middleware makes its loop
    logs.configure(settings.log_level, settings.log_format)
    database = bind(settings)
    broker, _runtime = build(settings, database)
    broker.add_middleware(DatabaseConnections(database))
    dramatiq.set_broker(broker)  # where dramatiq's CLI looks for it
    freeze_heap()  # what the process holds from here on lives as long as it does
    return broker


def build(settings: Settings, database: Any) -> tuple[dramatiq.Broker, Runtime]:
    """A broker that runs every actor, with its middleware, bound to a new runtime."""
    policy = DeliveryPolicy.from_settings(settings)
    broker = build_broker(settings, [*worker_middleware(settings), *policy.middleware])
    publisher = Publisher(broker, settings)
    outcomes = OutcomeReporter(publisher.report_outcomes)
    runtime = Runtime(settings, database, publisher, outcomes=outcomes)
    broker.add_middleware(Outcomes(outcomes))
    broker.add_middleware(HttpClient(runtime))
    broker.add_middleware(Attempts(runtime))
    declare_actors(broker, runtime)
    return broker, runtime
