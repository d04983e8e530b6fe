"""The interpreter tuning of a worker process, run in a child so this one keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys

# Attempts in flight: a window of live objects, each living while many others are made, and
# the reference cycles that asyncio and aiohttp leave behind (only a collection frees those).
IN_FLIGHT_WORKLOAD = """
import collections, gc, json, sys
tune = sys.argv[1] == "tuned"
if tune:
    from engine.shortcuts.interpreter import tune_interpreter
    tune_interpreter()
window = collections.deque()
before = [g["collections"] for g in gc.get_stats()]
for n in range(300_000):
    window.append({"attempt": [n], "claim": [n], "headers": {"n": [n]}})
    cycle = [n]
    cycle.append(cycle)
    if len(window) > 2_000:
        window.popleft()
after = [g["collections"] for g in gc.get_stats()]
print(json.dumps({
    "threshold": gc.get_threshold(),
    "switch_interval": sys.getswitchinterval(),
    "collections": [a - b for a, b in zip(after, before)],
}))
"""


def run(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", IN_FLIGHT_WORKLOAD, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_a_worker_collects_the_old_generations_far_less_often_with_attempts_in_flight() -> None:
    from engine.shortcuts.interpreter import GC_THRESHOLDS, GIL_SWITCH_INTERVAL_S

    default, tuned = run("default"), run("tuned")

    assert tuned["threshold"] == list(GC_THRESHOLDS)
    assert tuned["switch_interval"] == GIL_SWITCH_INTERVAL_S
    young, middle, full = default["collections"]  # type: ignore[misc]
    tuned_young, tuned_middle, tuned_full = tuned["collections"]  # type: ignore[misc]
    # Each collection of the old generations traverses everything the process holds.
    assert tuned_middle * 5 < middle
    assert tuned_full < full
    assert tuned_young * 5 < young


def test_freezing_the_heap_moves_what_is_alive_out_of_every_later_collection() -> None:
    code = (
        "import gc, json\n"
        "from engine.shortcuts.interpreter import freeze_heap\n"
        "kept = [[n] for n in range(1000)]\n"
        "before = gc.get_freeze_count()\n"
        "freeze_heap()\n"
        "print(json.dumps([before, gc.get_freeze_count()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, after = json.loads(out)

    assert before == 0 and after > 1000
