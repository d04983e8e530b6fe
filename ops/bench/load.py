"""The load generator: POST /v1/events over keep-alive connections, in its own process.

`python -m ops.bench.load --url URL --key KEY --connections 32 (--count N | --duration S)`
keeps `--connections` keep-alive connections busy (closed loop), or with
`--rate R` offers R requests/s on a fixed schedule (open loop). With `--batch N`
each request is a `POST /v1/events/batch` of N events (the URL's path is
replaced), and the events each 207 answer accepted (202) are counted from its
body. It prints one JSON line: accepted, statuses, latency percentiles (per
request), and when it ran (epoch s).

It speaks just enough HTTP/1.1 itself (an asyncio protocol per connection,
`Content-Length` answers) to cost about a tenth of what an aiohttp client did:
at 750 events/s that client took 0.5 ms of CPU per event, a third of what the
API took, from the same two cores the measured processes share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from ops.bench import shapes
from ops.bench.http1 import take_head

REQUEST_TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Load:
    """One load run's plan and what came back."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.next_index = 0
        self.statuses: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self.accepted_in_window = 0
        self.events_accepted = 0  # events answered 202, single or in batches
        self.events_accepted_in_window = 0
        self.pad = "x" * max(0, args.payload_bytes)
        self.started = 0.0
        self.window = (0.0, float("inf"))
        self.deadline = float("inf")

    def take(self) -> int | None:
        """The index of the next request to send, or None when the run is over."""
        if self.args.count and self.next_index >= self.args.count:
            return None
        if time.monotonic() >= self.deadline:
            return None
        index = self.next_index
        self.next_index += 1
        return index

    async def connection(self, target: Target) -> None:
        """Send requests one after another on one keep-alive connection."""
        conn: Connection | None = None
        while (index := self.take()) is not None:
            if self.args.rate:
                due = self.started + index / self.args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = self.body(index)
            sent = time.monotonic()
            accepted = 0
            try:
                if conn is None or conn.closed:
                    conn = await target.connect()
                code, answer = await conn.request(target.head(len(body)) + body, REQUEST_TIMEOUT_S)
                status = str(code)
                accepted = _accepted(code, answer, bool(self.args.batch))
            except (OSError, TimeoutError, ValueError) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            done = time.monotonic()
            self.statuses[status] += 1
            self.events_accepted += accepted
            if self.window[0] <= sent and done <= self.window[1]:
                self.latencies_ms.append((done - sent) * 1000.0)
                self.accepted_in_window += status in ("202", "207")
                self.events_accepted_in_window += accepted
        if conn is not None:
            conn.close()

    def body(self, index: int) -> bytes:
        """Request `index`'s body: one event, or a batch of `--batch` events."""
        if not self.args.batch:
            return json.dumps(self.event(index)).encode()
        first = index * self.args.batch
        events = [self.event(n) for n in range(first, first + self.args.batch)]
        return json.dumps({"events": events}).encode()

    def event(self, n: int) -> dict[str, Any]:
        """Event `n`: `{n, pad}`, or with `--shape properties20` the schema scenario's payload."""
        if getattr(self.args, "shape", "pad") == "properties20":
            return {"event_type": shapes.EVENT_TYPE, "payload": shapes.payload(n, self.pad)}
        return {"event_type": "bench.event", "payload": {"n": n, "pad": self.pad}}

    async def run(self) -> dict[str, Any]:
        """Run to the end; answer the result document."""
        args = self.args
        url = args.url
        if args.batch:
            url = url.rstrip("/").rsplit("/", 1)[0] + "/events/batch"
        target = Target(url, args.key)
        self.started = time.monotonic()
        wall_start = time.time()
        if args.duration:
            self.deadline = self.started + args.warmup + args.duration
            self.window = (self.started + args.warmup, self.deadline)
        await asyncio.gather(*(self.connection(target) for _ in range(args.connections)))
        finished = time.monotonic()
        measured = args.duration if args.duration else max(finished - self.started, 1e-9)
        return {
            "requests": sum(self.statuses.values()),
            "accepted": self.statuses.get("202", 0) + self.statuses.get("207", 0),
            "statuses": dict(self.statuses),
            "accepted_per_s": self.accepted_in_window / measured,
            "events_accepted": self.events_accepted,
            "events_accepted_per_s": self.events_accepted_in_window / measured,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "started_at": wall_start,
            "elapsed_s": finished - self.started,
        }


def _accepted(status: int, body: bytes, batch: bool) -> int:
    """Events an answer accepted as new: 1 for a 202, a 207's items answered 202."""
    if not batch:
        return int(status == 202)
    if status != 207:
        return 0
    return sum(1 for item in json.loads(body)["results"] if item.get("status") == 202)


class Target:
    """Where the requests go: the host and port to dial, the request head to send."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http only, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode("latin-1")

    def head(self, length: int) -> bytes:
        """The request line and headers for a body of `length` bytes."""
        return self._head + b"%d\r\n\r\n" % length

    async def connect(self) -> Connection:
        """Open one connection."""
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(Connection, self.host, self.port), REQUEST_TIMEOUT_S
        )
        return protocol


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, `Content-Length` answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._answer()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("closed before the answer"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Send one request; answer the status code and the body once the whole answer is in."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(
            timeout_s, lambda: waiter.done() or waiter.set_exception(TimeoutError())
        )
        self.transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _answer(self) -> tuple[int, bytes] | None:
        """Take one complete answer off the buffer: its status and body; None if incomplete."""
        head = take_head(self.buffer)
        if head is None:
            return None
        words, fields, body_at = head
        if b"transfer-encoding" in fields:
            raise ValueError("chunked answers are not understood here")
        if b"content-length" not in fields:
            raise ValueError("an answer without Content-Length")
        if fields.get(b"connection", b"").lower() == b"close":
            self.closed = True
        end = body_at + int(fields[b"content-length"])
        if len(self.buffer) < end:
            return None
        body = bytes(self.buffer[body_at:end])
        del self.buffer[:end]
        return int(words[1]), body


def main() -> int:
    """Parse the options, run, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m ops.bench.load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--count", type=int, default=0, help="requests in all (closed loop)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds before measuring")
    parser.add_argument("--rate", type=float, default=0.0, help="offered events/s (open loop)")
    parser.add_argument("--payload-bytes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=0, help="events per batch request; 0 = single")
    parser.add_argument(
        "--shape", choices=("pad", "properties20"), default="pad", help="the payload's shape"
    )
    args = parser.parse_args()
    if not args.count and not args.duration:
        parser.error("give --count or --duration")
    if os.getppid() == 1:
        return 1
    print(json.dumps(asyncio.run(Load(args).run())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
