"""The scheduler's gauges: exported by the process that registers them, and by no other."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest

from actors.metrics import SchedulerFigures


def exported(figures: SchedulerFigures) -> str:
    registry = CollectorRegistry()
    registry.register(figures)
    return generate_latest(registry).decode()


def test_a_standby_shows_only_that_it_does_not_lead() -> None:
    text = exported(SchedulerFigures())

    assert "hookline_scheduler_leader 0.0" in text
    assert "hookline_due_backlog" not in text  # never counted: no zero that looks like a count
    assert "hookline_breakers" not in text


def test_the_leader_shows_what_it_counted() -> None:
    figures = SchedulerFigures()
    figures.lead(True)
    figures.backlog(
        {"scheduled": 7, "due": 3, "quarantined": 2, "throttled": 40}, [("ep_1", 4), ("ep_2", 1)]
    )
    figures.breakers({"closed": 5, "open": 1, "half_open": 0})

    text = exported(figures)

    for line in (
        "hookline_scheduler_leader 1.0",
        "hookline_scheduled_backlog 7.0",
        "hookline_due_backlog 3.0",
        "hookline_quarantine_size 2.0",
        "hookline_throttled_deliveries 40.0",
        'hookline_endpoint_concurrency_limit{endpoint_id="ep_1"} 4.0',
        'hookline_breakers{state="open"} 1.0',
        'hookline_breakers{state="half_open"} 0.0',
    ):
        assert line in text.splitlines(), line
    figures.backlog({"scheduled": 0, "due": 0, "quarantined": 0, "throttled": 0}, [])
    assert "endpoint_id=" not in exported(figures)  # an endpoint no longer limited is gone


def test_importing_the_metrics_exports_none_of_them() -> None:
    """What the workers and the supervisor do: import the module, never register them."""
    script = (
        "import actors.metrics, actors.flow, actors.outcomes;"
        "from prometheus_client import REGISTRY, generate_latest;"
        "print(generate_latest(REGISTRY).decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout

    assert "hookline_attempts_total" in text  # the module's own metrics are there
    for name in ("hookline_scheduler_leader", "hookline_due_backlog", "hookline_quarantine_size"):
        assert name not in text, name
