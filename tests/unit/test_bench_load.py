"""The benchmark's load generator speaks enough HTTP/1.1: a server on 127.0.0.1 answers it."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from engine.events.payload_schema import check_schema, compile_schema, violations
from ops.bench import shapes
from ops.bench.load import Connection, Load, Target

Respond = Callable[[bytes], bytes]


def serve_and_load(respond: Respond, **options: Any) -> tuple[dict[str, Any], list[bytes]]:
    """Run the load generator against a raw server that answers each request with `respond`."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                request = head + await reader.readexactly(length)
                requests.append(request)
                answer = respond(request)
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> dict[str, Any]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        args = argparse.Namespace(
            url=f"http://127.0.0.1:{port}/v1/events",
            key="hk_test",
            connections=options.get("connections", 2),
            count=options.get("count", 10),
            duration=0.0,
            warmup=0.0,
            rate=0.0,
            payload_bytes=8,
            batch=options.get("batch", 0),
        )
        async with server:
            result = await asyncio.wait_for(Load(args).run(), 20)
        result["connections_opened"] = len(connections)
        return result

    return asyncio.run(main()), requests


def accepted(request: bytes) -> bytes:
    body = b'{"id":"evt_1"}'
    return b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_requests_carry_the_key_and_a_body_and_reuse_their_connections() -> None:
    result, requests = serve_and_load(accepted, connections=2, count=10)

    assert result["accepted"] == 10 and result["statuses"] == {"202": 10}
    assert result["connections_opened"] == 2, "keep-alive"
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/events HTTP/1.1\r\n")
    assert b"Authorization: Bearer hk_test" in head
    assert b'"event_type": "bench.event"' in body


def test_an_answer_that_closes_the_connection_makes_it_open_another() -> None:
    def closing(request: bytes) -> bytes:
        return b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    result, _ = serve_and_load(closing, connections=1, count=4)

    assert result["statuses"] == {"202": 4}
    assert result["connections_opened"] == 4


def test_an_answer_split_over_several_packets_is_read_whole() -> None:
    conn = Connection()
    answers = [b"HTTP/1.1 20", b"0 OK\r\nContent-Le", b"ngth: 4\r\n\r\nok", b"!!"]
    conn.buffer += answers[0]
    statuses = [conn._answer()]
    for part in answers[1:]:
        conn.buffer += part
        statuses.append(conn._answer())

    assert statuses == [None, None, None, (200, b"ok!!")]
    assert conn.buffer == b""


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
    ],
    ids=["chunked", "no-length"],
)
def test_an_answer_it_cannot_read_is_an_error_not_a_hang(answer: bytes) -> None:
    result, _ = serve_and_load(lambda request: answer, connections=1, count=2)

    assert result["statuses"] == {"ValueError": 2}


def test_a_batch_counts_the_events_its_answer_accepted() -> None:
    def multi_status(request: bytes) -> bytes:
        items = [{"status": 202, "id": "evt_1"}, {"status": 422}, {"status": 202}, {"status": 200}]
        body = json.dumps({"results": items}).encode()
        return b"HTTP/1.1 207 Multi-Status\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    result, requests = serve_and_load(multi_status, connections=1, count=3, batch=4)

    assert result["statuses"] == {"207": 3}
    assert result["events_accepted"] == 6, "two of each answer's four items were new"
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/events/batch HTTP/1.1\r\n")
    assert body.count(b'"event_type"') == 4


def test_only_plain_http_is_spoken() -> None:
    with pytest.raises(ValueError, match="plain http"):
        Target("https://127.0.0.1/v1/events", "k")


def test_the_schema_scenarios_payload_holds_to_its_20_property_schema() -> None:
    schema = shapes.schema()
    check_schema(schema)

    assert len(schema["properties"]) == shapes.PROPERTIES == 20
    assert violations(compile_schema(schema), shapes.payload(7, "xx")) == []
