"""The embedded deployment: API, workers and scheduler in one process.

Used by `hookline up` when no broker URL is set: an in-process broker, the
database named by the settings (SQLite under `data_dir` by default). The
database is still the source of truth, so a restart loses nothing: the
scheduler finds every event and delivery left unfinished.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import dramatiq
import structlog

from actors import runtime, supervision
from actors.broker import Publisher, build_broker, declare_actors, worker_middleware
from actors.scheduling import Scheduler
from api.app import create_app
from engine.credentials import CredentialCache
from engine.database import bind
from engine.migrations import migrate
from engine.settings import Settings

log = structlog.get_logger("hookline.embedded")

# SQLite has one writer: more threads only queue on its lock.
SQLITE_WORKER_THREADS = 16


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http_request", line=format % args)


@dataclass
class Embedded:
    """A running embedded Hookline; `stop()` shuts every part down in order."""

    server: WSGIServer
    worker: dramatiq.Worker
    scheduler: Scheduler
    broker: dramatiq.Broker
    threads: list[threading.Thread]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.scheduler.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.worker.stop(timeout=30_000)
        self.broker.close()
        runtime.set_runtime(None)


def start(settings: Settings) -> Embedded:
    """Migrate, then start workers, scheduler and the API server (not yet serving)."""
    database = bind(settings)
    migrate(database)
    threads = settings.worker_threads
    if settings.database_url is None:
        threads = min(threads, SQLITE_WORKER_THREADS)
    extra = [supervision.Outcomes(), runtime.HttpClient()]
    broker = build_broker(settings, worker_middleware(settings, extra))
    actors = declare_actors(broker)
    publisher = Publisher(broker, actors, settings)
    # The in-process worker consumes every queue, the supervisor's and the alerts' too.
    outcomes = supervision.OutcomeReporter(publisher.report_outcomes)
    shared = runtime.Runtime(settings, database, publisher, outcomes=outcomes)
    runtime.set_runtime(shared)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    scheduler = Scheduler(settings, database, publisher)
    scheduler_thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    scheduler_thread.start()
    app = create_app(
        settings,
        database=database,
        enqueue=publisher.enqueue,
        secretbox=shared.box,
        credentials=CredentialCache(settings.credential_cache_ttl_s),
    )
    host, _, port = settings.bind.rpartition(":")
    server = make_server(
        host.strip("[]"), int(port), app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    return Embedded(server, worker, scheduler, broker, [scheduler_thread])
