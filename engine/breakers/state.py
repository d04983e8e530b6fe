"""The circuit breaker of one endpoint: a pure state machine, the clock passed in.

    closed ──(window ≥ failure_pct of ≥ min_attempts, or consecutive failures)──▶ open
    open ──(cool-down over)──▶ half_open ──(the one probe succeeds)──▶ closed
                                         └─(the probe fails)──▶ open, cool-down doubled

While open, an endpoint's deliveries are parked, not attempted. An outage
is the time from the first opening to the next close; it sends warnings at
50, 70 and 90 % of `disable_after_s` and disables the endpoint at 100 %.
`Change.events` holds what the caller must act on: a `BreakerEvent`, or an
`OutageWarning` carrying its percentage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from engine.settings import Settings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
WARNING_PCTS = (50, 70, 90)


@dataclass(frozen=True)
class Policy:
    """The thresholds of one endpoint's breaker."""

    window_s: int = 300
    min_attempts: int = 10
    failure_pct: float = 70.0
    consecutive_failures: int = 20
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0
    disable_after_s: float = 3 * 86400
    release_per_s: float = 50.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The global policy: the `HOOKLINE_BREAKER_*` settings."""
        return cls(
            **{f.name: getattr(settings, "breaker_" + f.name) for f in dataclasses.fields(cls)}
        )

    def merged(self, overrides: Mapping[str, Any] | None) -> Policy:
        """This policy with an endpoint's non-null overrides applied."""
        changes = {
            f.name: overrides[f.name]
            for f in dataclasses.fields(self)
            if overrides and overrides.get(f.name) is not None
        }
        merged = replace(self, **changes)
        return replace(merged, max_cooldown_s=max(merged.max_cooldown_s, merged.cooldown_s))


@dataclass(frozen=True)
class Window:
    """Attempts in the window, by result."""

    successes: int = 0
    failures: int = 0

    @property
    def attempts(self) -> int:
        """Every attempt in the window."""
        return self.successes + self.failures

    @property
    def failure_rate(self) -> float:
        """Failed attempts over all attempts, 0.0 for an empty window."""
        return self.failures / self.attempts if self.attempts else 0.0


@dataclass(frozen=True)
class Breaker:
    """The persisted state of one breaker."""

    state: str = CLOSED
    transition: int = 0
    consecutive_failures: int = 0
    opened_at: dt.datetime | None = None
    outage_started_at: dt.datetime | None = None
    outage: int | None = None
    cooldown_s: float | None = None
    next_probe_at: dt.datetime | None = None
    probe_delivery_id: str | None = None
    probe_started_at: dt.datetime | None = None
    warnings_sent: int = 0


class BreakerEvent(StrEnum):
    """A transition the caller acts on; the value is how logs name it."""

    OPENED = "opened"
    REOPENED = "reopened"
    HALF_OPENED = "half_opened"
    PROBE_LOST = "probe_lost"
    CLOSED = "closed"
    DISABLE = "disable"


@dataclass(frozen=True)
class OutageWarning:
    """The outage has lasted `pct` % of `disable_after_s`: the owner is warned."""

    pct: int

    def __str__(self) -> str:
        return f"warning:{self.pct}"


@dataclass(frozen=True)
class Change:
    """A breaker after an input, and the events the caller acts on."""

    breaker: Breaker
    events: tuple[BreakerEvent | OutageWarning, ...] = ()

    @property
    def warning(self) -> OutageWarning | None:
        """The outage warning among the events, if any (a change carries at most one)."""
        return next((e for e in self.events if isinstance(e, OutageWarning)), None)

    def logged(self) -> list[str]:
        """The events as logs print them: `["warning:50", "half_opened"]`."""
        return [str(event) for event in self.events]


def should_trip(window: Window, consecutive_failures: int, policy: Policy) -> bool:
    """True when the window's failure rate or the run of failures opens the breaker."""
    if consecutive_failures >= policy.consecutive_failures:
        return True
    rated = window.attempts >= policy.min_attempts
    return rated and window.failure_rate * 100 >= policy.failure_pct


def after_outcomes(
    breaker: Breaker,
    *,
    window: Window,
    consecutive_failures: int,
    probe_succeeded: bool | None,
    policy: Policy,
    now: dt.datetime,
) -> Change:
    """Judge a batch of outcomes; `probe_succeeded` is None when the probe is not among them."""
    breaker = replace(breaker, consecutive_failures=consecutive_failures)
    if breaker.state == CLOSED and should_trip(window, consecutive_failures, policy):
        return _open(breaker, now, policy.cooldown_s, first=True)
    if breaker.state == HALF_OPEN and probe_succeeded is not None:
        if probe_succeeded:
            return Change(_closed(breaker), (BreakerEvent.CLOSED,))
        cooldown_s = min((breaker.cooldown_s or policy.cooldown_s) * 2, policy.max_cooldown_s)
        return _open(breaker, now, cooldown_s, first=False)
    return Change(breaker)


def tick(breaker: Breaker, *, policy: Policy, now: dt.datetime, probe_timeout_s: float) -> Change:
    """Apply what time alone does: disable, warn, half-open, free a lost probe."""
    if breaker.state == CLOSED or breaker.outage_started_at is None:
        return Change(breaker)
    elapsed_s = (now - breaker.outage_started_at).total_seconds()
    if elapsed_s >= policy.disable_after_s:
        disabled = replace(breaker, transition=breaker.transition + 1, next_probe_at=None)
        return Change(_without_probe(disabled), (BreakerEvent.DISABLE,))
    events: list[BreakerEvent | OutageWarning] = []
    level = sum(1 for pct in WARNING_PCTS if elapsed_s >= policy.disable_after_s * pct / 100)
    if level > breaker.warnings_sent:
        # A tick that was late past several levels sends only the highest one.
        events.append(OutageWarning(WARNING_PCTS[level - 1]))
        breaker = replace(breaker, warnings_sent=level)
    if breaker.state == OPEN and breaker.next_probe_at and now >= breaker.next_probe_at:
        breaker = replace(breaker, state=HALF_OPEN, transition=breaker.transition + 1)
        events.append(BreakerEvent.HALF_OPENED)
    elif breaker.state == HALF_OPEN and _probe_lost(breaker, now, probe_timeout_s):
        breaker = _without_probe(breaker)
        events.append(BreakerEvent.PROBE_LOST)
    return Change(breaker, tuple(events))


def due_at(breaker: Breaker, policy: Policy) -> dt.datetime | None:
    """When `tick` has something to do next for this breaker (a lost probe aside)."""
    if breaker.state == CLOSED or breaker.outage_started_at is None:
        return None
    start = breaker.outage_started_at
    moments = [
        start + dt.timedelta(seconds=policy.disable_after_s * pct / 100)
        for pct in WARNING_PCTS[breaker.warnings_sent :]
    ]
    moments.append(disables_at(breaker, policy) or start)
    if breaker.state == OPEN and breaker.next_probe_at is not None:
        moments.append(breaker.next_probe_at)
    return min(moments)


def disables_at(breaker: Breaker, policy: Policy) -> dt.datetime | None:
    """When the endpoint will be disabled if its breaker stays open."""
    if breaker.state == CLOSED or breaker.outage_started_at is None:
        return None
    return breaker.outage_started_at + dt.timedelta(seconds=policy.disable_after_s)


def reset(breaker: Breaker) -> Breaker:
    """Closed and forgotten, as after the endpoint is enabled: a state change of its own."""
    return _closed(breaker)


def _open(breaker: Breaker, now: dt.datetime, cooldown_s: float, *, first: bool) -> Change:
    transition = breaker.transition + 1
    opened = replace(
        _without_probe(breaker),
        state=OPEN,
        transition=transition,
        opened_at=now,
        cooldown_s=cooldown_s,
        next_probe_at=now + dt.timedelta(seconds=cooldown_s),
    )
    if first:
        opened = replace(opened, outage_started_at=now, outage=transition, warnings_sent=0)
        return Change(opened, (BreakerEvent.OPENED,))
    return Change(opened, (BreakerEvent.REOPENED,))


def _closed(breaker: Breaker) -> Breaker:
    return Breaker(state=CLOSED, transition=breaker.transition + 1)


def _without_probe(breaker: Breaker) -> Breaker:
    return replace(breaker, probe_delivery_id=None, probe_started_at=None)


def _probe_lost(breaker: Breaker, now: dt.datetime, timeout_s: float) -> bool:
    started = breaker.probe_started_at
    return started is not None and (now - started).total_seconds() >= timeout_s
