"""Gunicorn configuration for `hookline api` (gthread workers, bounds from Settings)."""

import os

from engine.settings import Settings

_settings = Settings.from_env()

wsgi_app = "api.app:get_app()"
bind = _settings.bind
worker_class = "gthread"
workers = _settings.api_workers
threads = _settings.api_threads
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
# Request line and header bounds; bodies are bounded by HOOKLINE_MAX_BODY_BYTES.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "hookline-api"


def on_starting(server):
    """Before the first fork: a revoked key is then refused by every worker at once."""
    from engine import credentials

    credentials.share_across_fork()


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
