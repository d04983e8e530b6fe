"""A webhook receiver on 127.0.0.1:0 whose behaviour each test sets.

Runs an aiohttp server on its own event loop in a background thread; records
every request; answers per path with a scripted sequence of statuses, an
optional delay, and an optional body.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    done_at: float = 0.0  # when the answer was ready


@dataclass
class Behaviour:
    statuses: deque[int] = field(default_factory=deque)  # consumed one per request
    default_status: int = 200
    delay_s: float = 0.0
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    reply: Callable[[bytes], bytes] | None = None  # computes the body from the request's
    # Over this many requests in flight on the path, answer 429 at once (None: no bound).
    capacity: int | None = None


class Receiver:
    """Start with `with Receiver() as receiver:`; `receiver.url(path)` names an endpoint."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.behaviours: dict[str, Behaviour] = defaultdict(Behaviour)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)  # most requests in flight at once, per path
        self.refused: dict[str, int] = defaultdict(int)  # 429s for being over `capacity`
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        received = Received(path, dict(request.headers), body, time.time())
        with self._lock:
            self.requests.append(received)
            behaviour = self.behaviours[path]
            self.in_flight[path] += 1
            self.peak[path] = max(self.peak[path], self.in_flight[path])
            over = behaviour.capacity is not None and self.in_flight[path] > behaviour.capacity
            if over:
                self.refused[path] += 1
                status = 429
            else:
                status = (
                    behaviour.statuses.popleft() if behaviour.statuses else behaviour.default_status
                )
        try:
            if behaviour.delay_s and not over:
                await asyncio.sleep(behaviour.delay_s)
            answer = behaviour.body if behaviour.reply is None else behaviour.reply(body)
            return web.Response(status=status, body=answer, headers=behaviour.headers)
        finally:
            with self._lock:
                self.in_flight[path] -= 1
                received.done_at = time.time()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *statuses: int, default: int = 200, delay_s: float = 0.0) -> None:
        """Answer `statuses` in turn on `path`, then `default`."""
        self.behaviours[path] = Behaviour(deque(statuses), default, delay_s)

    def limit(self, path: str, capacity: int, *, delay_s: float) -> None:
        """Take `capacity` requests at once on `path`, each `delay_s`; answer 429 above it."""
        self.behaviours[path] = Behaviour(delay_s=delay_s, capacity=capacity)

    def echo_challenge(self, path: str) -> None:
        """Answer a `webhook.verification` request on `path` with its challenge, as JSON."""

        def reply(body: bytes) -> bytes:
            document = json.loads(body)
            if document.get("type") != "webhook.verification":
                return b"ok"
            return json.dumps({"challenge": document["data"]["challenge"]}).encode()

        self.behaviours[path] = Behaviour(reply=reply)

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 20.0) -> list[Received]:
        """Wait until `path` got at least `count` requests; answer them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"{path}: {len(self.received(path))} of {count} requests in {timeout_s}s"
        )
