"""structlog, configured once per process: one JSON object per line off a terminal.

The stdlib loggers of dramatiq, pika and gunicorn go through the same
processors, so every line of every process has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]

_QUIET = {"pika": logging.WARNING, "dramatiq": logging.INFO, "aiohttp.access": logging.WARNING}


class PikaLossesAreWarnings(logging.Filter):
    """pika's errors, written as warnings: each is a lost connection that Hookline mends.

    A worker thread's publishing connection that sat idle past two heartbeats is closed by
    RabbitMQ; pika says so at error level when the connection is next used or closed, four
    lines per connection (48 in one worker's stop after a quiet hour). dramatiq reconnects
    and publishes again, consumers restart, and what was not published is published again
    once its lease runs out, so none of it needs a person: alerting on `level: error` must
    not fire on every deploy. A real outage still shows at error level in Hookline's own
    lines and dramatiq's (`Consumer encountered a connection error`), and in the metrics.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith("pika"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to stderr in one format."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            # Drop what the level hides before the timestamp and the rest are built for it.
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(PikaLossesAreWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
