"""How the API is served: uvicorn's gunicorn worker and HTTP protocol, with Hookline's bounds.

gunicorn still supervises the processes (forks, restarts, recycling after
`max_requests`, graceful shutdown); each worker serves its connections on
one asyncio loop and parses HTTP with httptools. uvicorn bounds neither a
request's line nor its headers; `BoundedHead` refuses a head past
`MAX_HEAD_BYTES` with a 431 and closes the connection. `ConcurrencyLimit`
answers a problem+json 503 past `MAX_IN_FLIGHT` requests in flight.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from gunicorn import glogging
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from api.errors import problem_body
from engine import logs
from engine.settings import Settings
from engine.shortcuts.loop import loop_name

# Requests in flight per worker; beyond, new ones are answered 503 (`ConcurrencyLimit`).
MAX_IN_FLIGHT = 2048
# Open connections per worker, idle ones included; beyond, uvicorn answers 503 itself.
MAX_CONNECTIONS = 2 * MAX_IN_FLIGHT
# A request line and headers together, as received; a JWT of 8 KiB fits many times over.
MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = problem_body(
    "headers-too-large",
    "Request header fields too large",
    431,
    f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
)


class HeadTooLarge(Exception):
    """Raised from a parser callback: stops httptools before the request is dispatched."""


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head grows past the bound.

    Two counts, because a head can pass the bound in two ways. One that completes within
    the read that crosses the bound is counted by the parser's callbacks as it is parsed
    (the request line, then each header), and refused before the request reaches the app.
    One that never completes (a header streamed for ever) never reaches a callback: the
    bytes received while in the head are counted after each read.
    """

    _received = 0  # bytes received since the message began, while in its head
    _parsed = 0  # bytes of its head the parser has handed over
    _in_head = True  # from a connection's (or message's) first byte to its headers' end
    _refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._received = self._parsed = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD_BYTES:
            self._refused = True
            raise HeadTooLarge  # uvicorn answers a parser's failure by `send_400_response`

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse()
        else:
            super().send_400_response(msg)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._received += len(data)
        if self._received > MAX_HEAD_BYTES:
            self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _TOO_LARGE
        )
        self.transport.close()


_BUSY = problem_body(
    "unavailable",
    "Service unavailable",
    503,
    "This API process has too many requests in flight; retry shortly.",
)


class ConcurrencyLimit:
    """ASGI middleware: past `limit` requests in flight, answer 503 (problem+json) at once."""

    def __init__(self, app: Any, limit: int = MAX_IN_FLIGHT) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            headers = [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(_BUSY)).encode()),
                (b"retry-after", b"1"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": _BUSY})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def server_protocol() -> type[HttpToolsProtocol]:
    """The HTTP protocol class for `uvicorn.Config(http=...)`."""
    return BoundedHead


class JsonLogger(glogging.Logger):
    """`logger_class` in `ops/gunicorn.conf.py`: gunicorn's own lines (the master's, the
    workers' boots and exits) go through the root logger `engine.logs` configures, so the
    API's every line is one JSON object like the other processes' (gunicorn writes plain
    text through handlers of its own)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_format)
        for own in (self.error_log, self.access_log):
            own.handlers[:] = []
            own.propagate = True


class Worker(UvicornWorker):
    """`worker_class = "api.server.Worker"` in `ops/gunicorn.conf.py`.

    The event loop is `HOOKLINE_EVENT_LOOP`'s (`engine.shortcuts.loop`).
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "asyncio",
        "http": BoundedHead,
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "limit_concurrency": MAX_CONNECTIONS,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        loop = loop_name(Settings.from_env().event_loop)
        # uvicorn_worker reads `self.CONFIG_KWARGS` in `__init__`: this worker's own copy.
        setattr(self, "CONFIG_KWARGS", {**type(self).CONFIG_KWARGS, "loop": loop})  # noqa: B010
        super().__init__(*args, **kwargs)
        # uvicorn_worker gave uvicorn's loggers gunicorn's handlers, which `JsonLogger` emptied:
        # they go through the root logger's JSON instead.
        for name in ("uvicorn.error", "uvicorn.access"):
            uvicorn_log = logging.getLogger(name)
            uvicorn_log.handlers = []
            uvicorn_log.propagate = True
