"""The benchmark's webhook receiver: a lean HTTP/1.1 server in its own process.

`python -m ops.bench.receiver --listeners N` listens on N ephemeral ports of
127.0.0.1 (one per endpoint, so each endpoint is its own "host" to the
delivery client's per-host pool), prints `{"ports": [...]}` on one line, and
serves until SIGTERM, its parent's exit, or `--max-lifetime-s`:

    /hang/...   waits until `/_release` or `--hang-max-s`, then answers 200
    /slow/MS/...  answers 200 after MS milliseconds (asyncio.sleep: any number at once)
    /tick/NAME/...  answers 200 at once, counted per NAME and per second (`ticks` in /_stats)
    /_release   releases every waiting `/hang` request, and answers later ones at
                once until `/_arm` (attempts still queued in a worker when a run
                ends must not hang into the next run)
    /_arm       makes `/hang` requests hang again
    /_stats     counts per path prefix, as JSON
    anything    200 at once

It speaks just enough HTTP/1.1 itself (an asyncio protocol per connection,
keep-alive, `Content-Length` bodies, read whole before answering): the
receivers of real webhooks run on other machines, and an aiohttp server here
took 0.13 ms of the two shared cores per delivery, a fifth of what the worker
took. Requests are answered in order on each connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter

from ops.bench.http1 import take_head

_REASONS = {200: "OK", 400: "Bad Request", 501: "Not Implemented"}


class Receiver:
    """What every connection shares: the release signal and the counts."""

    def __init__(self, hang_max_s: float) -> None:
        self.hang_max_s = hang_max_s
        self.release = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.ticks: dict[str, Counter[int]] = {}  # /tick/NAME/...: requests per whole second
        self.hanging = 0
        self.armed = True  # `/hang` requests wait; after `/_release`, not until `/_arm`

    def count(self, path: str) -> None:
        """Count a request under its first path segment (`/ok/3` under `ok`); ticks per second."""
        self.counts[path.split("/", 2)[1] if path.count("/") > 1 else path] += 1
        if path.startswith("/tick/"):
            name = path.split("/", 3)[2]
            self.ticks.setdefault(name, Counter())[int(time.time())] += 1

    def stats(self) -> bytes:
        """The counts and how many requests hang now, as JSON."""
        ticks = {name: dict(seconds) for name, seconds in self.ticks.items()}
        return json.dumps(
            {"counts": dict(self.counts), "hanging": self.hanging, "ticks": ticks}
        ).encode()

    async def answer(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for one request to `path`."""
        if path == "/_release":
            released, self.release = self.release, asyncio.Event()
            released.set()
            self.armed = False
            return 200, json.dumps({"released": self.hanging}).encode(), "application/json"
        if path == "/_arm":
            self.armed = True
            return 200, b"{}", "application/json"
        if path == "/_stats":
            return 200, self.stats(), "application/json"
        self.count(path)
        if path.startswith("/slow/"):
            await asyncio.sleep(slow_ms(path) / 1000.0)
            return 200, b"ok", "text/plain"
        if path.startswith("/hang/") and self.armed:
            self.hanging += 1
            try:
                await asyncio.wait_for(self.release.wait(), self.hang_max_s)
            except TimeoutError:
                pass
            finally:
                self.hanging -= 1
        return 200, b"ok", "text/plain"


def slow_ms(path: str) -> float:
    """The delay a `/slow/MS/...` path asks for, in milliseconds (0 when unreadable)."""
    try:
        return max(0.0, min(float(path.split("/", 3)[2]), 60_000.0))
    except (IndexError, ValueError):
        return 0.0


class Connection(asyncio.Protocol):
    """One client connection: requests parsed from the buffer and answered in order."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered (a hang); the next waits in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        """Answer every complete request in the buffer; a slow answer pauses the rest."""
        while self.transport is not None and not self.transport.is_closing():
            request = self._take_request()
            if request is None:
                return
            path, keep_alive = request
            if path.startswith(("/hang/", "/slow/")) or path in ("/_release", "/_arm"):
                self.busy = True
                task = asyncio.get_running_loop().create_task(self.receiver.answer(path))
                task.add_done_callback(lambda done, k=keep_alive: self._answered(done, k))
                return
            # Everything else answers at once: no task, no await.
            if path == "/_stats":
                self._write(200, self.receiver.stats(), "application/json", keep_alive)
            else:
                self.receiver.count(path)
                self._write(200, b"ok", "text/plain", keep_alive)

    def _answered(self, task: asyncio.Task[tuple[int, bytes, str]], keep_alive: bool) -> None:
        self.busy = False
        if task.cancelled() or task.exception() is not None:
            if self.transport is not None:
                self.transport.close()
            return
        status, body, content_type = task.result()
        self._write(status, body, content_type, keep_alive)
        if self.buffer:
            self._serve()

    def _take_request(self) -> tuple[str, bool] | None:
        """Take one whole request off the buffer: its path and whether to keep the connection."""
        head = take_head(self.buffer)
        if head is None:
            return None
        words, fields, body_at = head
        if len(words) != 3:
            self._refuse(400)
            return None
        if b"transfer-encoding" in fields:
            self._refuse(501)
            return None
        keep_alive = words[2] == b"HTTP/1.1"
        if b"connection" in fields:
            keep_alive = fields[b"connection"].lower() == b"keep-alive"
        end = body_at + int(fields.get(b"content-length", b"0"))
        if len(self.buffer) < end:
            return None
        del self.buffer[:end]
        return words[1].decode("latin-1").split("?", 1)[0], keep_alive

    def _write(self, status: int, body: bytes, content_type: str, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        if not keep_alive:
            self.transport.close()

    def _refuse(self, status: int) -> None:
        self.buffer.clear()
        self._write(status, b"", "text/plain", keep_alive=False)


async def serve(listeners: int, hang_max_s: float, max_lifetime_s: float) -> None:
    """Listen on `listeners` ports until told to stop."""
    receiver = Receiver(hang_max_s)
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: Connection(receiver), "127.0.0.1", 0, backlog=1024)
        for _ in range(listeners)
    ]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    print(json.dumps({"ports": ports}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent, deadline = os.getppid(), time.monotonic() + max_lifetime_s
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    receiver.release.set()
    for server in servers:
        server.close()


def main() -> int:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(prog="python -m ops.bench.receiver")
    parser.add_argument("--listeners", type=int, default=1)
    parser.add_argument("--hang-max-s", type=float, default=120.0)
    parser.add_argument("--max-lifetime-s", type=float, default=3600.0)
    args = parser.parse_args()
    asyncio.run(serve(args.listeners, args.hang_max_s, args.max_lifetime_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
