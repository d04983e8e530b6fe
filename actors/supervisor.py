"""The supervisor process's composition root: `dramatiq actors.supervisor:setup`.

`hookline supervisor` runs dramatiq's CLI with this callable, one process and
one thread, consuming `hookline.supervise` and `hookline.alert`; two or more
supervisors share them (`actors.supervise`, `actors.alert` say why that is safe). Its
actors need the database and, for the alerts, the SSRF-guarded HTTP client;
no attempt pipeline and no outcome reporter.
"""

from __future__ import annotations

import dramatiq

from actors.broker import Publisher, build_broker, worker_middleware
from actors.lifecycle import DatabaseConnections, HttpClient
from actors.registry import declare_actors
from actors.runtime import Runtime
from actors.signals import absorb_repeated_stops
from actors.worker import install_event_loop, tune_interpreter
from engine import logs
from engine.db.connect import bind
from engine.settings import Settings


def setup(settings: Settings | None = None) -> dramatiq.Broker:
    """Build the supervisor's broker, actors and runtime; dramatiq's CLI takes the broker."""
    settings = settings or Settings.from_env()
    absorb_repeated_stops()
    tune_interpreter()
    install_event_loop(settings.event_loop)
    logs.configure(settings.log_level, settings.log_format)
    database = bind(settings)
    broker = build_broker(settings, worker_middleware(settings))
    runtime = Runtime(settings, database, Publisher(broker, settings))
    broker.add_middleware(DatabaseConnections(database))
    broker.add_middleware(HttpClient(runtime))
    declare_actors(broker, runtime)
    dramatiq.set_broker(broker)  # where dramatiq's CLI looks for it
    return broker
