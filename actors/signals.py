"""One stop, however many copies of its signal arrive: a worker process drains once.

A SIGTERM to the whole process group of `hookline worker` (systemd's default
`KillMode=control-group`, or `kill -TERM -PGID`) reaches each dramatiq worker
process twice within a millisecond: from the sender, and forwarded by dramatiq's
parent. Dramatiq reads a second SIGTERM as "stop now": the process exits
without recording the attempts in flight, and its threads can hold the exit up
until they are killed. `absorb_repeated_stops` wraps the handler dramatiq
installed (it runs in `setup`, after dramatiq set its handlers): a stop signal
within `REPEAT_WINDOW_S` of the first is the same stop and is ignored; one
later still means "stop now", as dramatiq intends.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("hookline.worker")

# Copies of one stop arrive together; an operator insisting comes seconds later.
REPEAT_WINDOW_S = 2.0
STOP_SIGNALS = tuple(
    sig for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if sig is not None
)


def absorb_repeated_stops(
    signals: Iterable[signal.Signals] = STOP_SIGNALS,
    *,
    window_s: float = REPEAT_WINDOW_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wrap this process's handlers of `signals`: repeats within `window_s` of the first stop
    are dropped. Call from the main thread, after the handlers to wrap are installed."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread handles signals (an embedded or test setup)
    first_stop: list[float] = []  # shared by every stop signal: a stop is a stop

    for sig in signals:
        handler = signal.getsignal(sig)
        if not callable(handler):
            continue

        def absorbing(signum: int, frame: FrameType | None, handler: Any = handler) -> Any:
            now = clock()
            if first_stop and now - first_stop[0] < window_s:
                log.info("stop_signal_repeated", signal=signal.Signals(signum).name)
                return None
            if not first_stop:
                first_stop.append(now)
            return handler(signum, frame)

        signal.signal(sig, absorbing)
