"""`api.offload`: blocking calls leave the event loop, connected, with the request's log context."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import structlog

from api.offload import Offload, Offloaded


class Database:
    """Records connects and closes per thread, like peewee's per-thread connection state."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.events: list[tuple[str, str]] = []

    def connect(self, reuse_if_open: bool = False) -> None:
        self.local.open = True
        self.events.append(("connect", threading.current_thread().name))

    def is_closed(self) -> bool:
        return not getattr(self.local, "open", False)

    def close(self) -> None:
        self.local.open = False
        self.events.append(("close", threading.current_thread().name))


def test_a_call_runs_on_a_pool_thread_with_a_connection_it_gives_back() -> None:
    database = Database()
    offload = Offload(database, threads=2)

    def work() -> tuple[str, bool]:
        return threading.current_thread().name, database.is_closed()

    name, closed = asyncio.run(offload.run(work))

    assert name.startswith("api-blocking") and not closed
    assert database.events == [("connect", name), ("close", name)]


def test_a_call_that_raises_still_gives_its_connection_back() -> None:
    database = Database()
    offload = Offload(database, threads=1)

    def fail() -> None:
        raise LookupError("no such row")

    with pytest.raises(LookupError):
        asyncio.run(offload.run(fail))
    assert [event for event, _thread in database.events] == ["connect", "close"]


def test_a_call_told_it_needs_no_database_never_connects() -> None:
    database = Database()
    offload = Offload(database, threads=1)

    assert asyncio.run(offload.run(lambda: 42, uses_database=False)) == 42
    assert database.events == []


def test_the_request_log_context_goes_along_to_the_thread() -> None:
    offload = Offload(Database(), threads=1)

    async def request(request_id: str) -> dict[str, Any]:
        structlog.contextvars.bind_contextvars(request_id=request_id)
        return await offload.run(structlog.contextvars.get_contextvars)

    async def main() -> list[dict[str, Any]]:
        return list(await asyncio.gather(request("a"), request("b")))

    assert asyncio.run(main()) == [{"request_id": "a"}, {"request_id": "b"}]


class Resource:
    auth = "tenant"
    scopes = {"GET": "things:read"}
    uses_database = False

    def __init__(self) -> None:
        self.threads: list[str] = []

    def on_get(self, req: Any, resp: Any, thing_id: str) -> None:
        self.threads.append(threading.current_thread().name)
        resp.media = {"id": thing_id}

    async def on_post(self, req: Any, resp: Any) -> None:
        resp.media = {"native": True}


class Request:
    method = "GET"

    def __init__(self) -> None:
        self.context: dict[str, Any] = {}


class Response:
    media: Any = None


def test_offloaded_runs_plain_responders_on_the_pool_and_keeps_the_rest() -> None:
    database = Database()
    resource = Resource()
    face = Offloaded(resource, Offload(database, threads=1), max_body_bytes=1024)
    resp = Response()

    asyncio.run(face.on_get(Request(), resp, thing_id="t1"))

    assert resp.media == {"id": "t1"}
    assert resource.threads[0].startswith("api-blocking")
    assert database.events == []  # the resource says it uses no database
    assert face.on_post == resource.on_post  # a coroutine responder is the resource's own
    assert (face.auth, face.scopes, face.resource) == ("tenant", {"GET": "things:read"}, resource)
    assert "on_get" in dir(face)
