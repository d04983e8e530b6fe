"""Starting and stopping the benchmark's processes: Hookline's roles, receiver, load, baseline."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


# Ports handed to listeners: below Linux's ephemeral range (32768-60999), where no outgoing
# connection takes one between its choice here and the listener's bind. A port from
# `bind(0)` is from that range, and a scheduler under CI's load once found its metrics port
# taken by then ("Address already in use") and never started.
_LISTEN_PORTS = range(20000, 32768)
_handed: set[int] = set()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now, not handed out before by this
    process."""
    for _ in range(500):
        port = random.choice(_LISTEN_PORTS)
        if port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise RuntimeError("no free port on 127.0.0.1 below the ephemeral range")


def group_rss_kib(pgid: int) -> list[int]:
    """Resident memory (KiB) of each process in the process group `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append(int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return found


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_process(pgids: dict[int, str], database: str) -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) of each live process of some groups, keyed (group name, pid);
    PostgreSQL backends whose title names `database` come under `postgres`, and RabbitMQ's
    Erlang VM under `rabbitmq` (the bench's vhost is all it serves, unless something else
    shares the box)."""
    found: dict[tuple[str, int], float] = {}
    needle = f" {database} ".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm, _, rest = Path(f"/proc/{entry}/stat").read_text().rpartition(")")
            fields = rest.split()
            name = pgids.get(int(fields[2]))
            if name is None and comm.endswith("(postgres"):
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    name = "postgres"
            elif name is None and comm.endswith("(beam.smp"):
                name = "rabbitmq"  # the whole broker: the bench's vhost is all it serves
            if name is not None:
                found[(name, int(entry))] = (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, ValueError, IndexError):
            continue
    return found


def group_pids(pgid: int) -> list[int]:
    """Every process id in the process group `pgid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return pids


class Processes:
    """Children in sessions of their own, each logging to a file; all stopped on `stop_all`."""

    def __init__(
        self, env: dict[str, str], logs: Path, on_start: Callable[[int], None] | None = None
    ) -> None:
        self.env = env
        self.logs = logs
        self.on_start = on_start
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, stdout: Any = None
    ) -> subprocess.Popen[bytes]:
        """Start `python argv…` as `name`; stdout goes to its log unless given."""
        log = open(self.logs / f"{name}.log", "ab")
        child = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.children[name] = child
        if self.on_start is not None:
            self.on_start(child.pid)
        return child

    def role(self, role: str) -> subprocess.Popen[bytes]:
        """Start `hookline <role>`."""
        return self.start(role, ["-m", "api.cli", role])

    def pid(self, name: str) -> int:
        """The process id (and process group id) of a running child."""
        return self.children[name].pid

    def running(self, name: str) -> bool:
        """True while the child is alive."""
        child = self.children.get(name)
        return child is not None and child.poll() is None

    def stop(self, name: str, timeout_s: float = 30) -> None:
        """SIGTERM the child (it stops its own children); SIGKILL its group after `timeout_s`."""
        child = self.children.pop(name, None)
        if child is None:
            return
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_pids(child.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(child.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Stop every child, the last started first."""
        for name in reversed(list(self.children)):
            self.stop(name)

    def log_count(self, name: str, needle: str) -> int:
        """How many lines of a child's log hold `needle`."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return 0
        with path.open(errors="replace") as lines:
            return sum(needle in line for line in lines)

    def tail(self, name: str, lines: int = 30) -> str:
        """The end of a child's log."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Api:
    """A tiny JSON client for the Hookline API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: Any = None, key: str = "") -> tuple[int, Any]:
        """One request; answer (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def wait_healthy(self, timeout_s: float = 60) -> None:
        """Wait until /healthz answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API at {self.base_url} was not healthy within {timeout_s}s")

    def tenant(self, admin_token: str, name: str) -> tuple[str, str]:
        """Create a tenant; answer (tenant id, API key)."""
        status, body = self.call("POST", "/v1/tenants", {"name": name}, key=admin_token)
        if status != 201:
            raise RuntimeError(f"creating a tenant answered {status}: {body}")
        return str(body["id"]), str(body["api_key"])

    def endpoint(
        self, key: str, url: str, transform: dict[str, str] | None = None, **more: Any
    ) -> str:
        """Register an endpoint (shaping its bodies with `transform`, if given); answer its id.

        `more`: other fields of the endpoint (`rate_limit_per_s`, `ordering`, ...).
        """
        fields: dict[str, Any] = {"url": url, **more}
        if transform is not None:
            fields["transform"] = transform
        status, body = self.call("POST", "/v1/endpoints", fields, key=key)
        if status != 201:
            raise RuntimeError(f"creating an endpoint answered {status}: {body}")
        return str(body["id"])
