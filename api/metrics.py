"""The API's Prometheus metrics and `/metrics` (multiprocess-aware under gunicorn).

Labels are bounded: the route template, never an id, a tenant or a URL.
"""

from __future__ import annotations

import os
import time
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as multiprocess_collector

from api.offload import OnLoop

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "hookline_http_requests_total",
    "API requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "hookline_http_request_duration_seconds",
    "API request latency, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENTS_INGESTED = Counter(
    "hookline_events_ingested_total",
    "Events accepted: created, or a duplicate of an idempotency key.",
    ["result"],
)


class Metrics(OnLoop):
    """Falcon middleware counting and timing every request."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "metrics_started", None)
        if started is None:
            return
        method = req.method if req.method in _METHODS else "OTHER"
        route = req.uri_template or "unmatched"
        HTTP_REQUESTS.labels(method, route, str(resp.status_code)).inc()
        HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


def exposition() -> bytes:
    """Every process's metrics when gunicorn runs several, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess_collector.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class MetricsResource:
    """`GET /metrics` in the Prometheus text format."""

    auth = None
    uses_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = exposition()
