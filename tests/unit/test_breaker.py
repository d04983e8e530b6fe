"""The circuit breaker's state machine: thresholds, cool-downs, the one probe, warnings, disable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from engine.breakers import state as breaker
from engine.breakers.state import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerEvent,
    OutageWarning,
    Policy,
    Window,
)
from tests.factories import make_settings

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
POLICY = Policy(
    window_s=300,
    min_attempts=10,
    failure_pct=70,
    consecutive_failures=20,
    cooldown_s=30,
    max_cooldown_s=600,
    disable_after_s=1000,
)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def judge(
    state: Breaker,
    window: Window,
    *,
    consecutive: int = 0,
    probe: bool | None = None,
    now: float = 0,
    policy: Policy = POLICY,
) -> breaker.Change:
    return breaker.after_outcomes(
        state,
        window=window,
        consecutive_failures=consecutive,
        probe_succeeded=probe,
        policy=policy,
        now=at(now),
    )


def opened(now: float = 0) -> Breaker:
    return judge(Breaker(), Window(0, 10), consecutive=10, now=now).breaker


def tick(
    state: Breaker, now: float, policy: Policy = POLICY, probe_timeout_s: float = 60
) -> breaker.Change:
    return breaker.tick(state, policy=policy, now=at(now), probe_timeout_s=probe_timeout_s)


def test_a_window_at_the_failure_threshold_with_enough_attempts_opens_the_breaker() -> None:
    change = judge(Breaker(), Window(successes=3, failures=7))

    assert change.events == (BreakerEvent.OPENED,)
    assert change.breaker.state == OPEN
    assert change.breaker.opened_at == change.breaker.outage_started_at == T0
    assert change.breaker.next_probe_at == at(30)
    assert change.breaker.outage == change.breaker.transition == 1


def test_a_window_below_the_threshold_keeps_the_breaker_closed() -> None:
    change = judge(Breaker(), Window(successes=4, failures=6), consecutive=6)

    assert change.events == ()
    assert change.breaker.state == CLOSED
    assert change.breaker.consecutive_failures == 6


def test_too_few_attempts_never_open_the_breaker_on_the_rate_alone() -> None:
    assert judge(Breaker(), Window(successes=0, failures=9), consecutive=9).events == ()


def test_twenty_consecutive_failures_open_the_breaker_whatever_the_window() -> None:
    change = judge(Breaker(), Window(successes=500, failures=20), consecutive=20)

    assert change.events == (BreakerEvent.OPENED,)


def test_outcomes_while_open_change_nothing_but_the_counters() -> None:
    state = opened()

    change = judge(state, Window(5, 0), consecutive=0, now=5)

    assert change.events == ()
    assert change.breaker.state == OPEN
    assert change.breaker.consecutive_failures == 0


def test_the_cool_down_ending_half_opens_the_breaker() -> None:
    state = opened()

    assert tick(state, 29).events == ()
    change = tick(state, 30)

    assert change.events == (BreakerEvent.HALF_OPENED,)
    assert change.breaker.state == HALF_OPEN
    assert change.breaker.transition == state.transition + 1


def test_the_probe_succeeding_closes_the_breaker_and_forgets_the_outage() -> None:
    half_open = tick(opened(), 30).breaker

    change = judge(half_open, Window(0, 10), consecutive=0, probe=True, now=31)

    assert change.events == (BreakerEvent.CLOSED,)
    assert change.breaker == Breaker(state=CLOSED, transition=half_open.transition + 1)


def test_the_probe_failing_reopens_with_the_cool_down_doubled_up_to_the_cap() -> None:
    policy = dataclasses.replace(POLICY, disable_after_s=10**6)
    state, cooldowns = opened(), []
    for _ in range(7):
        assert state.next_probe_at is not None
        now = (state.next_probe_at - T0).total_seconds()
        state = tick(state, now, policy).breaker
        change = judge(state, Window(0, 20), consecutive=20, probe=False, now=now, policy=policy)
        assert change.events == (BreakerEvent.REOPENED,)
        state = change.breaker
        cooldowns.append(state.cooldown_s)

    assert cooldowns == [60, 120, 240, 480, 600, 600, 600]
    assert state.outage_started_at == T0, "the outage began at the first opening"


def test_outcomes_other_than_the_probe_leave_a_half_open_breaker_waiting() -> None:
    half_open = tick(opened(), 30).breaker

    assert judge(half_open, Window(0, 30), consecutive=30, now=31).events == ()


def test_a_lost_probe_frees_the_slot_after_the_probe_timeout() -> None:
    half_open = dataclasses.replace(
        tick(opened(), 30).breaker, probe_delivery_id="dlv_1", probe_started_at=at(31)
    )

    assert tick(half_open, 60, probe_timeout_s=60).events == ()
    change = tick(half_open, 91, probe_timeout_s=60)

    assert change.events == (BreakerEvent.PROBE_LOST,)
    assert change.breaker.probe_delivery_id is None and change.breaker.state == HALF_OPEN


@pytest.mark.parametrize(("elapsed", "warning"), [(500, 50), (700, 70), (900, 90)])
def test_warnings_go_out_at_50_70_and_90_percent_of_disable_after(
    elapsed: float, warning: int
) -> None:
    state = dataclasses.replace(opened(), next_probe_at=at(10_000))
    state = dataclasses.replace(state, warnings_sent=[50, 70, 90].index(warning))

    assert tick(state, elapsed - 1).events == ()
    change = tick(state, elapsed)
    assert change.events == (OutageWarning(warning),)
    assert tick(change.breaker, elapsed + 1).events == (), "each warning goes out once"


def test_a_late_tick_sends_only_the_highest_warning_due() -> None:
    state = dataclasses.replace(opened(), next_probe_at=at(10_000))

    change = tick(state, 950)

    assert change.events == (OutageWarning(90),)
    assert change.breaker.warnings_sent == 3


def test_a_warning_carries_its_percentage_as_a_number() -> None:
    state = dataclasses.replace(opened(), next_probe_at=at(10_000))

    warning = tick(state, 700).warning

    assert warning == OutageWarning(70)
    assert warning.pct + 20 == 90


def test_the_events_print_for_the_logs_as_plain_json_strings() -> None:
    change = tick(opened(), 500)

    assert change.events == (OutageWarning(50), BreakerEvent.HALF_OPENED)
    assert json.dumps(change.logged()) == '["warning:50", "half_opened"]'
    assert judge(Breaker(), Window(0, 10)).logged() == ["opened"]


def test_an_outage_reaching_disable_after_disables_the_endpoint() -> None:
    state = opened()

    change = tick(state, 1000)

    assert change.events == (BreakerEvent.DISABLE,)
    assert change.breaker.next_probe_at is None
    assert breaker.disables_at(state, POLICY) == at(1000)


def test_a_closed_breaker_has_nothing_due() -> None:
    assert tick(Breaker(), 10**6).events == ()
    assert breaker.due_at(Breaker(), POLICY) is None


def test_due_at_is_the_next_probe_or_warning_or_disable() -> None:
    state = opened()

    assert breaker.due_at(state, POLICY) == at(30)
    long = dataclasses.replace(state, next_probe_at=at(800), warnings_sent=1)
    assert breaker.due_at(long, POLICY) == at(700)


def test_an_endpoints_overrides_replace_the_settings_field_by_field() -> None:
    policy = POLICY.merged({"failure_pct": 50, "min_attempts": None, "cooldown_s": 900})

    assert policy.failure_pct == 50
    assert policy.min_attempts == POLICY.min_attempts
    assert policy.max_cooldown_s == 900, "the cap is never below the first cool-down"
    assert judge(Breaker(), Window(5, 5), policy=policy).events == (BreakerEvent.OPENED,)
    assert judge(Breaker(), Window(5, 5)).events == ()
    assert POLICY.merged(None) == POLICY


def test_the_global_policy_comes_from_the_settings() -> None:
    settings = make_settings(
        HOOKLINE_BREAKER_WINDOW_S=60,
        HOOKLINE_BREAKER_FAILURE_PCT=55,
        HOOKLINE_BREAKER_DISABLE_AFTER_S=120,
        HOOKLINE_BREAKER_RELEASE_PER_S=5,
    )

    policy = Policy.from_settings(settings)

    assert (policy.window_s, policy.failure_pct, policy.disable_after_s) == (60, 55, 120)
    assert (policy.release_per_s, policy.consecutive_failures) == (5, 20)
    assert Policy.from_settings(make_settings()) == Policy()


def test_reset_closes_the_breaker_as_a_state_change_of_its_own() -> None:
    state = opened()

    closed = breaker.reset(state)

    assert closed.state == CLOSED and closed.transition == state.transition + 1
    assert closed.outage_started_at is None and closed.consecutive_failures == 0
