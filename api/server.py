"""How the API is served: uvicorn's gunicorn worker and HTTP protocol, with Hookline's bounds.

gunicorn still supervises the processes (forks, restarts, recycling after
`max_requests`, graceful shutdown); each worker serves its connections on
one asyncio loop and parses HTTP with httptools. uvicorn bounds neither a
request's line nor its headers; `BoundedHead` refuses a head past
`MAX_HEAD_BYTES` with a 431 and closes the connection.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

# Connections and requests in flight per worker; beyond, new ones are answered 503.
MAX_CONCURRENCY = 2048
# A request line and headers together, as received; a JWT of 8 KiB fits many times over.
MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = json.dumps(
    {
        "type": "urn:hookline:problem:headers-too-large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
    },
    separators=(",", ":"),
).encode()


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head grows past the bound."""

    _head_bytes = 0
    _in_head = True  # from a connection's (or message's) first byte to its headers' end

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/problem+json\r\n"
                b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _TOO_LARGE
            )
            self.transport.close()


def server_protocol() -> type[HttpToolsProtocol]:
    """The HTTP protocol class for `uvicorn.Config(http=...)`."""
    return BoundedHead


class Worker(UvicornWorker):
    """`worker_class = "api.server.Worker"` in `ops/gunicorn.conf.py`."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "asyncio",
        "http": BoundedHead,
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "limit_concurrency": MAX_CONCURRENCY,
    }
