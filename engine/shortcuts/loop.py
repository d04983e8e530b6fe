"""Which event loop serves the API and sends attempts: uvloop's, where it is installed.

The delivery client (aiohttp) and the API (uvicorn) spend a good part of their
CPU in the event loop itself: scheduling callbacks, timers, socket reads and
writes. uvloop does the same work in C on libuv (ops/bench/NOTES.md#uvloop).
`HOOKLINE_EVENT_LOOP=asyncio` turns it off; where uvloop cannot be imported
(it is not built for Windows), the stdlib's loop is used and `loop_name` says so.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType

try:
    uvloop: ModuleType | None = importlib.import_module("uvloop")
except ImportError:  # pragma: no cover - uvloop is installed wherever it builds
    uvloop = None


def loop_name(wanted: str) -> str:
    """The loop `wanted` ("uvloop" or "asyncio") gives on this machine."""
    return "uvloop" if wanted == "uvloop" and uvloop is not None else "asyncio"


def install_event_loop(wanted: str) -> str:
    """Make every `asyncio.new_event_loop()` of this process the `wanted` loop; name it.

    Dramatiq's AsyncIO middleware makes its loop with `asyncio.new_event_loop()`,
    which asks the policy: call this before the worker boots.
    """
    name = loop_name(wanted)
    if name == "uvloop" and uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)  # the stdlib's default policy
    return name
