"""Cleans up after a benchmark that died without its `finally` (SIGKILL, OOM).

Started by the bench in a session of its own with the bench's pid and a state
file; once the bench is gone it kills the process groups listed there and drops
the database and vhost, unless the bench marked the state file done.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2

from ops.bench.services import PG_ADMIN_DSN


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean(state: dict[str, object]) -> None:
    """Kill the listed process groups; drop the database and the vhost."""
    for pgid in state.get("pgids", []):  # type: ignore[union-attr]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pgid), signal.SIGKILL)
    if state.get("database"):
        with contextlib.suppress(psycopg2.Error):
            admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{state["database"]}" WITH (FORCE)')
            admin.close()
    if state.get("vhost"):
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", str(state["vhost"])],
            capture_output=True,
            timeout=60,
            check=False,
        )


class Watchdog:
    """The bench's side: start the watchdog, keep its state file current, mark it done."""

    def __init__(self, path: Path, database: str, vhost: str, max_s: float) -> None:
        self.path = path
        self.state: dict[str, Any] = {"pgids": [], "database": database, "vhost": vhost}
        self._write()
        subprocess.Popen(
            [sys.executable, "-m", "ops.bench.watchdog", str(os.getpid()), str(path), str(max_s)],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _write(self) -> None:
        self.path.write_text(json.dumps(self.state))

    def started(self, pgid: int) -> None:
        """A child started in a process group of its own."""
        self.state["pgids"].append(pgid)
        self._write()

    def done(self) -> None:
        """The bench cleaned up after itself."""
        self.state["done"] = True
        self._write()


def main() -> int:
    """Wait for the bench to go (at most `max_s`), then clean up unless it finished."""
    parent, path, max_s = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + max_s
    while _alive(parent):
        if time.monotonic() > deadline:
            return 0  # the bench outlived its own deadline: leave it alone
        time.sleep(1.0)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if not state.get("done"):
        clean(state)
    path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
