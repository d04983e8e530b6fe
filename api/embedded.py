"""The embedded deployment: API, workers and scheduler in one process.

Used by `hookline up` when no broker URL is set: an in-process broker, the
database named by the settings (SQLite under `data_dir` by default). The
database is still the source of truth, so a restart loses nothing: the
scheduler finds every event and delivery left unfinished, and, the in-process
broker's messages having died with the last run, takes it at its first pass
instead of when the leases those messages held run out.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import dramatiq
import structlog
import uvicorn

from actors import worker as workers
from actors.scheduler import Scheduler
from api.app import create_app
from api.server import MAX_CONNECTIONS, ConcurrencyLimit, server_protocol
from engine.db.connect import bind
from engine.db.migrations import migrate
from engine.deliveries import schedule
from engine.events.ingest import EventStore
from engine.settings import Settings
from engine.tenancy.credentials import CredentialCache, CredentialGeneration
from engine.tenancy.limiter import Limiter

log = structlog.get_logger("hookline.embedded")

# SQLite has one writer: more threads only queue on its lock.
SQLITE_WORKER_THREADS = 16


def _listen(bind: str) -> socket.socket:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(socket.SOMAXCONN)
    return sock


@dataclass
class Embedded:
    """A running embedded Hookline; `stop()` shuts every part down in order."""

    server: uvicorn.Server
    socket: socket.socket
    worker: dramatiq.Worker
    scheduler: Scheduler
    broker: dramatiq.Broker
    threads: list[threading.Thread]
    limiter: Limiter
    served: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve the API on this thread until `stop()`."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.served.set()

    def stop(self) -> None:
        self.server.should_exit = True
        self.served.wait(timeout=30)
        self.socket.close()
        self.limiter.close()
        self.scheduler.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.worker.stop(timeout=30_000)
        self.broker.close()


def start(settings: Settings) -> Embedded:
    """Migrate, then start workers, scheduler and the API server (not yet serving)."""
    database = bind(settings)
    migrate(database)
    if settings.broker_url is None:
        # The in-process broker's messages died with the last run: what they carried is
        # taken again by the scheduler's first pass, not after its leases run out.
        with database.connection_context():
            deliveries, events = schedule.expire_leases()
        if deliveries or events:
            log.info("unfinished_work_resumed", deliveries=deliveries, events=events)
    threads = settings.worker_threads
    if settings.database_url is None:
        threads = min(threads, SQLITE_WORKER_THREADS)
    # The broker, middleware and actors of `hookline worker`, with an in-process broker; its
    # worker consumes every queue, the supervisor's and the alerts' too.
    broker, runtime = workers.build(settings, database)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    scheduler = Scheduler(settings, database, runtime.publisher)
    scheduler_thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    scheduler_thread.start()
    limiter = Limiter(settings)
    app = create_app(
        settings,
        database=database,
        enqueue=runtime.publisher.enqueue,
        secretbox=runtime.box,
        credentials=CredentialCache(
            settings.credential_cache_ttl_s, generation=CredentialGeneration()
        ),
        events=EventStore(),
        limiter=limiter,
    )
    config = uvicorn.Config(
        ConcurrencyLimit(app),
        loop="asyncio",
        http=server_protocol(),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
    )
    server = uvicorn.Server(config)
    return Embedded(
        server, _listen(settings.bind), worker, scheduler, broker, [scheduler_thread], limiter
    )
