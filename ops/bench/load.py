"""The load generator: POST /v1/events from an aiohttp client in its own process.

`python -m ops.bench.load --url URL --key KEY --connections 32 (--count N | --duration S)`
keeps `--connections` keep-alive connections busy (closed loop), or with
`--rate R` offers R events/s on a fixed schedule (open loop). It prints one
JSON line: accepted, statuses, latency percentiles, and when it ran (epoch s).
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

import aiohttp


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

    async def connection(self, session: aiohttp.ClientSession) -> None:
        """Send requests one after another on one connection's worth of concurrency."""
        headers = {"Authorization": f"Bearer {self.args.key}", "Content-Type": "application/json"}
        while (index := self.take()) is not None:
            if self.args.rate:
                due = self.started + index / self.args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = json.dumps(
                {"event_type": "bench.event", "payload": {"n": index, "pad": self.pad}}
            )
            sent = time.monotonic()
            try:
                async with session.post(self.args.url, data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            done = time.monotonic()
            self.statuses[status] += 1
            if self.window[0] <= sent and done <= self.window[1]:
                self.latencies_ms.append((done - sent) * 1000.0)
                if status == "202":
                    self.accepted_in_window += 1

    async def run(self) -> dict[str, Any]:
        """Run to the end; answer the result document."""
        args = self.args
        connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.started = time.monotonic()
            wall_start = time.time()
            if args.duration:
                self.deadline = self.started + args.warmup + args.duration
                self.window = (self.started + args.warmup, self.deadline)
            tasks = [self.connection(session) for _ in range(args.connections)]
            await asyncio.gather(*tasks)
            finished = time.monotonic()
        measured = args.duration if args.duration else max(finished - self.started, 1e-9)
        return {
            "requests": sum(self.statuses.values()),
            "accepted": self.statuses.get("202", 0),
            "statuses": dict(self.statuses),
            "accepted_per_s": self.accepted_in_window / measured,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "started_at": wall_start,
            "elapsed_s": finished - self.started,
        }


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
    args = parser.parse_args()
    if not args.count and not args.duration:
        parser.error("give --count or --duration")
    if os.getppid() == 1:
        return 1
    print(json.dumps(asyncio.run(Load(args).run())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
