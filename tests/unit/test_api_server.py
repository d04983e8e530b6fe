"""`api.server`: the API's HTTP protocol refuses an oversized head (over real loopback sockets)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.server import (
    MAX_HEAD_BYTES,
    BoundedHead,
    ConcurrencyLimit,
    Worker,
    server_protocol,
)

CALLS: list[str] = []  # the paths the app was called with


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    CALLS.append(scope["path"])
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    CALLS.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(
        app, http=server_protocol(), lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)
    sock.close()


def head(header_bytes: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n"


def read_answer(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head_part.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head_part + b"\r\n\r\n" + body


def test_the_gunicorn_worker_serves_with_the_bounded_protocol() -> None:
    assert Worker.CONFIG_KWARGS["http"] is BoundedHead
    assert server_protocol() is BoundedHead


def test_a_head_within_the_bound_is_served(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(head(10_000))
        assert read_answer(conn).startswith(b"HTTP/1.1 200")


def test_a_head_past_the_bound_gets_a_431_problem_and_the_connection_closes(
    address: tuple[str, int],
) -> None:
    request = head(MAX_HEAD_BYTES + 1000)[:-4]  # a head that never ends
    with socket.create_connection(address, timeout=10) as conn:
        for start in range(0, len(request), 4096):
            try:
                conn.sendall(request[start : start + 4096])
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = read_answer(conn)
        rest = conn.recv(65536)

    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431")
    assert b"application/problem+json" in status
    problem = json.loads(body)
    assert problem["type"] == "urn:hookline:problem:headers-too-large"
    assert problem["status"] == 431
    assert rest == b""  # closed


def assert_431(answer: bytes) -> None:
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431"), status
    assert json.loads(body)["type"] == "urn:hookline:problem:headers-too-large"


@pytest.mark.parametrize(
    "request_head",
    [
        head(100_000),  # one header of 100 KB
        b"GET / HTTP/1.1\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 200) for i in range(400))
        + b"\r\n",
        b"GET /" + b"p" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a long request line
    ],
    ids=["one-header", "many-headers", "request-line"],
)
def test_a_whole_head_past_the_bound_in_one_write_is_refused_before_the_app(
    address: tuple[str, int], request_head: bytes
) -> None:
    """The head completes within the read that crosses the bound: it used to be served."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(request_head)
        assert_431(read_answer(conn))
        assert conn.recv(65536) == b""  # closed
    assert CALLS == [], "the app never saw the request"


def test_each_request_on_a_kept_alive_connection_has_its_own_bound(
    address: tuple[str, int],
) -> None:
    count = 2 * MAX_HEAD_BYTES // 8000 + 2  # more than twice the bound in all
    with socket.create_connection(address, timeout=10) as conn:
        for _ in range(count):
            conn.sendall(head(8000))
            assert read_answer(conn).startswith(b"HTTP/1.1 200")


def test_past_the_limit_of_requests_in_flight_a_503_problem_is_answered_at_once() -> None:
    release = asyncio.Event()
    answered: list[dict[str, Any]] = []

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = ConcurrencyLimit(slow, limit=2)

    async def call() -> tuple[int, dict[str, bytes], bytes]:
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await limited({"type": "http"}, None, send)
        start, body = messages
        return start["status"], dict(start["headers"]), body["body"]

    async def main() -> None:
        held = [asyncio.ensure_future(call()) for _ in range(2)]
        await asyncio.sleep(0.01)
        status, headers, body = await asyncio.wait_for(call(), 5)  # the third: refused at once
        answered.append({"status": status, "headers": headers, "problem": json.loads(body)})
        release.set()
        assert [(await done)[0] for done in held] == [200, 200]
        assert limited.in_flight == 0
        assert (await call())[0] == 200  # room again

    asyncio.run(main())

    (refused,) = answered
    assert refused["status"] == 503
    assert refused["headers"][b"content-type"] == b"application/problem+json"
    assert refused["headers"][b"retry-after"] == b"1"
    assert refused["problem"]["type"] == "urn:hookline:problem:unavailable"
    assert refused["problem"]["status"] == 503
