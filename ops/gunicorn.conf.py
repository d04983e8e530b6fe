"""Gunicorn configuration for `hookline api` (uvicorn workers, bounds from Settings)."""

import os

from engine.settings import Settings

_settings = Settings.from_env()

wsgi_app = "api.app:get_app()"  # an ASGI app, despite the setting's name
bind = _settings.bind
# One asyncio loop per worker (api.server); HOOKLINE_API_THREADS sizes each worker's pool
# for blocking work (api.offload), not gunicorn's threads.
worker_class = "api.server.Worker"
workers = _settings.api_workers
# Recycle workers now and then, staggered, so a slow leak can never grow unbounded. Not too
# often: a new worker imports the app and starts with cold pools and caches, and at 10,000
# requests a worker taking 500 events/s was replaced every 20 s.
max_requests = 1_000_000
max_requests_jitter = 100_000
timeout = 30
graceful_timeout = 30
keepalive = 5
# The workers' heartbeat file: on tmpfs, its updates never wait on a disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "hookline-api"


def on_starting(server):
    """Before the first fork: a revoked key is then refused by every worker at once."""
    from engine.tenancy import credentials

    credentials.share_across_fork()


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
