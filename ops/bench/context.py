"""What every scenario shares: options, processes, API, database, receiver ports."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from ops.bench.processes import Api, Processes, cpu_by_process, group_rss_kib
from ops.bench.profile import Profiler
from ops.bench.services import DATABASE


class Db:
    """One autocommit psycopg2 connection for the benchmark's own queries."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True
        self.queries = 0
        self.backend_pid = int(self.scalar("SELECT pg_backend_pid()"))

    def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement; answer the rows it touched."""
        self.queries += 1
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def row(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        """The first row of a query."""
        self.queries += 1
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return tuple(cursor.fetchone() or ())

    def scalar(self, sql: str, params: Any = None) -> Any:
        """The first column of the first row of a query."""
        found = self.row(sql, params)
        return found[0] if found else None

    def transactions(self) -> int:
        """Transactions committed or rolled back in this database by anyone but this connection.

        PostgreSQL counts every autocommit statement as one: a count of round trips
        that end a transaction. Backends report at most once a second, when idle.
        """
        mine = self.queries + 1
        done = self.scalar(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        return int(done) - mine

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@dataclass
class Context:
    """The running benchmark."""

    args: argparse.Namespace
    processes: Processes
    api: Api
    admin_token: str
    pg: Db
    pg_url: str
    amqp_url: str
    ports: list[int]
    receiver_url: str
    profiler: Profiler | None = None
    names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def profile(self, name: str, process: str) -> contextlib.AbstractContextManager[None]:
        """Record a py-spy profile of a child's process group during the block, if asked."""
        if self.profiler is None:
            return contextlib.nullcontext()
        return self.profiler.record(name, self.processes.pid(process))

    def tenant(self, label: str) -> tuple[str, str]:
        """A fresh tenant for one run; answer (tenant id, API key)."""
        return self.api.tenant(self.admin_token, f"bench-{label}-{next(self.names)}")

    def endpoints(
        self,
        key: str,
        count: int,
        hanging: int = 0,
        shared_host: bool = False,
        transform: dict[str, str] | None = None,
    ) -> list[str]:
        """Register `count` endpoints; the first `hanging` hang.

        Each is on a receiver port of its own (a host of its own to the delivery
        client's per-host pools), or with `shared_host` all on the first port, as
        one big customer's endpoints are. With `transform`, each shapes its bodies so.
        """
        ids = []
        for i in range(count):
            kind = "hang" if i < hanging else "ok"
            port = self.ports[0 if shared_host else i % len(self.ports)]
            url = f"http://127.0.0.1:{port}/{kind}/{i}"
            ids.append(self.api.endpoint(key, url, transform))
        return ids

    def receiver(self, path: str) -> dict[str, Any]:
        """Call the receiver's control path (`/_release`, `/_arm`, `/_stats`)."""
        with urllib.request.urlopen(self.receiver_url + path, timeout=10) as response:
            return dict(json.loads(response.read()))


class RssSampler:
    """Samples the resident memory of a process group every `interval_s` in a thread."""

    def __init__(self, pgid: int, interval_s: float = 0.5) -> None:
        self.pgid = pgid
        self.interval_s = interval_s
        self.max_total_kib = 0
        self.max_process_kib = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        """Take one sample now."""
        sizes = group_rss_kib(self.pgid)
        if sizes:
            self.max_total_kib = max(self.max_total_kib, sum(sizes))
            self.max_process_kib = max(self.max_process_kib, max(sizes))
            self.processes = max(self.processes, len(sizes))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


class CpuMeter:
    """CPU seconds that some children, the bench database's backends and RabbitMQ spend in a block.

    Sampled every second per process, so that processes that come and go (pooled
    connections recycled, workers restarted) are counted up to their last sample.
    """

    def __init__(self, ctx: Context, *names: str, interval_s: float = 1.0) -> None:
        self.ctx = ctx
        self.names = names
        self.interval_s = interval_s
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.used: dict[str, float] = {}
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Read every counted process's CPU time now."""
        groups = {
            self.ctx.processes.pid(name): name
            for name in self.names
            if self.ctx.processes.running(name)
        }
        found = cpu_by_process(groups, DATABASE)
        # The benchmark's own polling backend is not Hookline's work.
        found.pop(("postgres", self.ctx.pg.backend_pid), None)
        for key, seconds in found.items():
            # Present at the start: counted from there; a newcomer: counted from zero.
            self.first.setdefault(key, 0.0 if self._started else seconds)
            self.last[key] = seconds
        self._started = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def per_unit(self, units: int) -> dict[str, float]:
        """`cpu_<name>_ms`: CPU milliseconds per unit of work, per process kind."""
        return {f"cpu_{k}_ms": v * 1000 / max(units, 1) for k, v in self.used.items()}

    def __enter__(self) -> CpuMeter:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        self.used = {name: 0.0 for name in (*self.names, "postgres", "rabbitmq")}
        for key, seconds in self.last.items():
            self.used[key[0]] += max(0.0, seconds - self.first.get(key, 0.0))


def wait_until(probe: Any, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Call `probe` until truthy or `timeout_s` passes; answer whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(interval_s)
    return bool(probe())
