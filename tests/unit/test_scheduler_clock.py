"""The scheduler's flow clock: releases and paces keep their interval however long a pass takes."""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.scheduler import Scheduler
from engine.settings import Settings


class Closed:
    """A database whose connection is always closed: the clock drops it at its end."""

    def is_closed(self) -> bool:
        return True


def test_a_pass_that_takes_seconds_holds_back_no_release_and_no_pace() -> None:
    settings = Settings().with_overrides(flow_interval_s=0.05, scheduler_interval_s=0.05)
    scheduler = Scheduler(settings, Closed(), publisher=object())  # type: ignore[arg-type]
    calls = {"release": 0, "pace": 0, "pass": 0}

    def slow_pass() -> bool:
        calls["pass"] += 1
        scheduler.stop.wait(5.0)  # a retention batch, the gauges' counts, a slow database
        return False

    def count(kind: str) -> Any:
        def step() -> int:
            calls[kind] += 1
            return 0

        return step

    scheduler.run_once = slow_pass  # type: ignore[method-assign]
    scheduler.release_once = count("release")  # type: ignore[method-assign]
    scheduler.pace_once = count("pace")  # type: ignore[method-assign]
    running = threading.Thread(target=scheduler.run)
    running.start()
    time.sleep(1.0)
    scheduler.stop.set()
    running.join(timeout=10)

    assert not running.is_alive()
    assert calls["pass"] == 1, "the first pass is still running"
    assert calls["release"] >= 8, f"releases every 50 ms beside it: {calls}"
    assert calls["pace"] >= 8, f"paces every 50 ms beside it: {calls}"


def test_a_failing_release_is_waited_out_and_the_lead_kept() -> None:
    settings = Settings().with_overrides(flow_interval_s=0.01, scheduler_interval_s=0.2)
    scheduler = Scheduler(settings, Closed(), publisher=object())  # type: ignore[arg-type]
    scheduler.leading = True
    failures = []

    def failing() -> int:
        failures.append(time.monotonic())
        raise RuntimeError("a bug in one release")

    scheduler.release_once = failing  # type: ignore[method-assign]
    scheduler.pace_once = lambda: 0  # type: ignore[method-assign]
    clock = threading.Thread(target=scheduler._flow_clock)
    clock.start()
    time.sleep(0.5)
    scheduler.stop.set()
    clock.join(timeout=10)

    assert scheduler.leading, "the clock follows the lead; only the passes give it up"
    assert 1 <= len(failures) <= 4, f"a wait of scheduler_interval_s after each: {failures}"
