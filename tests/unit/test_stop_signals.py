"""`actors.signals.absorb_repeated_stops`: copies of one stop reach the handler once.

Each case runs in a child process: it installs signal handlers and signals itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, os, signal, time
from actors.signals import absorb_repeated_stops

calls = []
signal.signal(signal.SIGTERM, lambda signum, frame: calls.append("TERM"))
signal.signal(signal.SIGHUP, lambda signum, frame: calls.append("HUP"))
if {absorb}:
    absorb_repeated_stops(window_s=0.5)
t0 = time.monotonic()
for sig, after in (("SIGTERM", 0.0), ("SIGTERM", 0.05), ("SIGHUP", 0.1), ("SIGTERM", 0.8)):
    time.sleep(max(0.0, after - (time.monotonic() - t0)))
    os.kill(os.getpid(), getattr(signal, sig))
    time.sleep(0.01)  # let the handler run before the next copy: no coalescing
print(json.dumps(calls))
"""


def handled(*, absorb: bool) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(absorb=absorb)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result: list[str] = json.loads(out.strip().splitlines()[-1])
    return result


def test_copies_of_a_stop_within_the_window_reach_the_handler_once() -> None:
    # Two SIGTERMs and a SIGHUP within 0.1 s are one stop; a SIGTERM 0.8 s later insists.
    assert handled(absorb=True) == ["TERM", "TERM"]


def test_without_it_every_copy_reaches_the_handler() -> None:
    assert handled(absorb=False) == ["TERM", "TERM", "HUP", "TERM"]


def test_outside_the_main_thread_it_leaves_the_handlers_alone() -> None:
    code = (
        "import signal, threading\n"
        "from actors.signals import absorb_repeated_stops\n"
        "handler = lambda signum, frame: None\n"
        "signal.signal(signal.SIGTERM, handler)\n"
        "thread = threading.Thread(target=absorb_repeated_stops)\n"
        "thread.start(); thread.join()\n"
        "print(signal.getsignal(signal.SIGTERM) is handler)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "True"
