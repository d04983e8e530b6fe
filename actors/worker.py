"""The worker process's composition root: `dramatiq actors.worker:setup`.

`hookline worker` runs dramatiq's CLI with this callable; each worker process
calls it once to read the settings, bind the database, and build the broker,
its middleware and the actors, all bound to one `Runtime`. `build` is the
same wiring without the process-wide parts; the embedded mode runs it too.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import dramatiq

from actors.broker import Publisher, build_broker, worker_middleware
from actors.lifecycle import Attempts, DatabaseConnections, HttpClient, Outcomes
from actors.middleware import DeliveryPolicy
from actors.outcomes import OutcomeReporter
from actors.registry import declare_actors
from actors.runtime import Runtime
from engine import logs
from engine.db.connect import bind
from engine.settings import Settings

# The event loop that sends attempts shares the GIL with dramatiq's threads, which fan out
# and record. A thread that wants the GIL waits up to this long for the one holding it; at
# CPython's default (5 ms) the loop paid that at nearly every wake-up, and at half load the
# lag to a first attempt went from a p50 of about 20 ms (1 ms) to 50-180 ms.
GIL_SWITCH_INTERVAL_S = 0.001

# CPython collects its youngest generation every 700 container allocations. A worker holds
# hundreds of attempts in flight for tens of milliseconds each (claims, requests, tasks,
# futures, aiohttp's objects): each collection found them alive and promoted them, so the
# older generations, and every object the process holds, were traversed again and again.
# In `python -m ops.bench` end to end that was 18-22 % of the worker's CPU (perf); at
# 10,000, most are gone before a collection looks, and it is about 3 %. Cycles are still
# collected, a few thousand allocations later.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_interpreter() -> None:
    """The GIL's switch interval and the collector's thresholds of a worker process."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def setup(settings: Settings | None = None) -> dramatiq.Broker:
    """Build this process's broker, actors and runtime; dramatiq's CLI takes the broker."""
    settings = settings or Settings.from_env()
    tune_interpreter()
    logs.configure(settings.log_level, settings.log_format)
    database = bind(settings)
    broker, _runtime = build(settings, database)
    broker.add_middleware(DatabaseConnections(database))
    dramatiq.set_broker(broker)  # where dramatiq's CLI looks for it
    # What the process holds from here on (modules, actors, settings) lives as long as it
    # does: out of every later collection's way. Garbage made so far is collected first.
    gc.collect()
    gc.freeze()
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
