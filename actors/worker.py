"""Entry point of a Dramatiq worker process: `dramatiq actors.worker:setup`.

`hookline worker` runs dramatiq's CLI with this callable; each worker process
calls it once to read the settings, bind the database and build the broker.
"""

from __future__ import annotations

import dramatiq

from actors import runtime
from actors import supervise as supervision
from actors.broker import Publisher, build_broker, declare_actors, worker_middleware
from engine import logs
from engine.db.connect import bind
from engine.settings import Settings
from engine.shortcuts.interpreter import freeze_heap, tune_interpreter


def setup(settings: Settings | None = None) -> dramatiq.Broker:
    """Build this process's broker, actors and runtime."""
    settings = settings or Settings.from_env()
    tune_interpreter()
    logs.configure(settings.log_level, settings.log_format)
    database = bind(settings)
    extra = [runtime.DatabaseConnections(), supervision.Outcomes(), runtime.HttpClient()]
    broker = build_broker(settings, worker_middleware(settings, extra))
    actors = declare_actors(broker)
    publisher = Publisher(broker, actors, settings)
    outcomes = supervision.OutcomeReporter(publisher.report_outcomes)
    runtime.set_runtime(runtime.Runtime(settings, database, publisher, outcomes=outcomes))
    freeze_heap()  # what the process holds from here on lives as long as it does
    return broker
