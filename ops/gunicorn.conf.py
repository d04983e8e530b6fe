"""Gunicorn configuration for `hookline api` (uvicorn workers, bounds from Settings)."""

import os

from engine.settings import Settings

_settings = Settings.from_env()

# An ASGI app, despite the setting's name; `api.app.Worker` builds it with the credential
# counter `on_starting` shares, but gunicorn wants the setting all the same.
wsgi_app = "api.app:get_app()"
bind = _settings.bind
# One asyncio loop per worker (api.server); HOOKLINE_API_THREADS sizes each worker's pool
# for blocking work (api.offload), not gunicorn's threads.
worker_class = "api.app.Worker"
workers = _settings.api_workers
# Recycle workers now and then, staggered, so a slow leak can never grow unbounded; rarely,
# since a new worker starts with cold pools and caches (ops/bench/NOTES.md#worker-recycling).
max_requests = 1_000_000
max_requests_jitter = 100_000
timeout = 30
graceful_timeout = 30
keepalive = 5
# The workers' heartbeat file: on tmpfs, its updates never wait on a disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
# The API's access log is Hookline's own JSON `request` line (`api.middleware`,
# HOOKLINE_ACCESS_LOG); gunicorn's lines are JSON too (`api.server.JsonLogger`).
accesslog = None
errorlog = "-"
logger_class = "api.server.JsonLogger"
loglevel = _settings.log_level
proc_name = "hookline-api"


def on_starting(server):
    """Before the first fork: a revoked key is then refused by every worker at once."""
    from engine.tenancy.credentials import CredentialGeneration

    generation = CredentialGeneration()
    generation.share_across_fork()
    server.app.credential_generation = generation  # each worker's `api.app.Worker` reads it


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
