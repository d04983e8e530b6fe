"""A worker process's interpreter tuning: the GIL's switch interval and the collector's pace.

Pure stdlib, called by the worker's composition root (`actors.worker.setup`):
`tune_interpreter()` as the process starts, `freeze_heap()` once everything it
keeps for its life (modules, actors, settings) is built.
"""

from __future__ import annotations

import gc
import sys

# The event loop that sends attempts shares the GIL with the threads that fan out and
# record: past this long, the thread holding the GIL hands it over to one that waits
# (ops/bench/NOTES.md#gil-switch-interval). CPython's default is 5 ms.
GIL_SWITCH_INTERVAL_S = 0.001

# The youngest generation is collected every 10,000 container allocations, not 700: the
# attempts in flight are mostly gone by then instead of promoted, so the older
# generations are traversed far less often (ops/bench/NOTES.md#gc-thresholds).
GC_THRESHOLDS = (10_000, 10, 10)


def tune_interpreter() -> None:
    """Set the GIL's switch interval and the collector's thresholds for this process."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_heap() -> None:
    """Collect what is garbage now, then keep everything alive out of later collections' way."""
    gc.collect()
    gc.freeze()
