"""Blocking work off the event loop: a thread pool, with a database connection per call.

The API serves every request on one asyncio loop per process. What blocks,
reading or writing PostgreSQL, fetching JWT keys, reading metrics files,
runs on `Offload`'s threads instead. `Offloaded` turns a resource written
with plain (blocking) responders into one Falcon's ASGI app can route: each
responder runs on the pool, with a pooled connection checked out for the
call and the request's log context (structlog contextvars) carried along.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import falcon.asgi

T = TypeVar("T")

# Methods whose body a blocking responder may read (`api.validation.read_json`).
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Offload:
    """Runs blocking calls on a bounded pool of threads."""

    def __init__(self, database: Any, threads: int) -> None:
        self.database = database
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api-blocking")

    async def run(self, fn: Callable[..., T], *args: Any, uses_database: bool = True) -> T:
        """`fn(*args)` on a pool thread, connected to the database unless told otherwise."""
        call = functools.partial(
            contextvars.copy_context().run, self._call, fn, args, uses_database
        )
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], uses_database: bool) -> T:
        if not uses_database:
            return fn(*args)
        self.database.connect(reuse_if_open=True)
        try:
            return fn(*args)
        finally:
            if not self.database.is_closed():
                self.database.close()


async def receive_body(req: falcon.asgi.Request, max_bytes: int) -> bytes | None:
    """The body, read whole up to one byte past `max_bytes`; None when its length says too big."""
    length = req.content_length
    if length is not None and length > max_bytes:
        return None
    return bytes(await req.stream.read(max_bytes + 1))


class Offloaded:
    """An ASGI face for a resource whose responders block: each runs on the `Offload`.

    Everything else (`auth`, `scopes`, `ingest_methods`, coroutine responders)
    is the resource's own. A request's body is read on the loop first and left
    on `req.context.body` (see `api.validation.read_json`).
    """

    def __init__(self, resource: Any, offload: Offload, max_body_bytes: int) -> None:
        self.resource = resource
        self._offload = offload
        self._max_body_bytes = max_body_bytes
        self._uses_database = bool(getattr(resource, "uses_database", True))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.resource, name)
        if name.startswith("on_") and callable(value) and not inspect.iscoroutinefunction(value):
            value = self._responder(value)
        setattr(self, name, value)  # looked up once: a resource's attributes never change
        return value

    def __dir__(self) -> list[str]:
        return dir(self.resource)

    def _responder(self, responder: Callable[..., None]) -> Callable[..., Awaitable[None]]:
        offload, max_bytes, uses_database = self._offload, self._max_body_bytes, self._uses_database

        @functools.wraps(responder)
        async def respond(
            req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any
        ) -> None:
            if req.method in _WITH_BODY:
                req.context.body = await receive_body(req, max_bytes)
            await offload.run(
                functools.partial(responder, req, resp, **params), uses_database=uses_database
            )

        return respond


class OnLoop:
    """For middleware whose `process_request` and `process_response` never block.

    An ASGI app awaits `*_async` methods; these run the plain ones on the loop.
    """

    async def process_request_async(self, req: Any, resp: Any) -> None:
        self.process_request(req, resp)  # type: ignore[attr-defined]

    async def process_response_async(
        self, req: Any, resp: Any, resource: Any, req_succeeded: bool
    ) -> None:
        self.process_response(req, resp, resource, req_succeeded)  # type: ignore[attr-defined]
