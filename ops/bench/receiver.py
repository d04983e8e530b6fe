"""The benchmark's webhook receiver: a lean aiohttp server in its own process.

`python -m ops.bench.receiver --listeners N` listens on N ephemeral ports of
127.0.0.1 (one per endpoint, so each endpoint is its own "host" to the
delivery client's per-host pool), prints `{"ports": [...]}` on one line, and
serves until SIGTERM, its parent's exit, or `--max-lifetime-s`:

    /hang/...   waits until `/_release` or `--hang-max-s`, then answers 200
    /_release   releases every waiting `/hang` request
    /_stats     counts per path prefix, as JSON
    anything    200 at once
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

from aiohttp import web


class Receiver:
    """Answers fast, or hangs on `/hang`; counts what it got."""

    def __init__(self, hang_max_s: float) -> None:
        self.hang_max_s = hang_max_s
        self.release = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.hanging = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request."""
        path = request.path
        if path == "/_release":
            released, self.release = self.release, asyncio.Event()
            released.set()
            return web.json_response({"released": self.hanging})
        if path == "/_stats":
            return web.json_response({"counts": dict(self.counts), "hanging": self.hanging})
        await request.read()
        self.counts[path.split("/", 2)[1] if path.count("/") > 1 else path] += 1
        if path.startswith("/hang/"):
            self.hanging += 1
            try:
                await asyncio.wait_for(self.release.wait(), self.hang_max_s)
            except TimeoutError:
                pass
            finally:
                self.hanging -= 1
        return web.Response(text="ok")


async def serve(listeners: int, hang_max_s: float, max_lifetime_s: float) -> None:
    """Listen on `listeners` ports until told to stop."""
    receiver = Receiver(hang_max_s)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ports = []
    for _ in range(listeners):
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    print(json.dumps({"ports": ports}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent, deadline = os.getppid(), time.monotonic() + max_lifetime_s
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    receiver.release.set()
    await runner.cleanup()


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
