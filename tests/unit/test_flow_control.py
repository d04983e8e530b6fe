"""The pure parts of flow control: bounds, the token bucket, room, and AIMD's steps."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.db.models import FIFO, UNORDERED, Endpoint, EndpointFlow
from engine.deliveries import adaptive, flow
from engine.deliveries.client import Outcome

NOW = dt.datetime(2026, 12, 2, 12, 0, 0)


def endpoint(**fields: object) -> Endpoint:
    values: dict[str, object] = {
        "id": "ep_1",
        "rate_limit_per_s": None,
        "max_in_flight": None,
        "ordering": UNORDERED,
    }
    values.update(fields)
    return Endpoint(**values)


def answer(status: int | None = 200, ms: float = 10.0, **fields: object) -> Outcome:
    return Outcome(NOW, ms, status_code=status, **fields)  # type: ignore[arg-type]


def test_an_endpoint_without_settings_or_learnt_limits_takes_the_fast_path() -> None:
    assert not flow.controlled(endpoint(), None, NOW)
    assert not flow.controlled(endpoint(), EndpointFlow(endpoint_id="ep_1"), NOW)
    past = EndpointFlow(endpoint_id="ep_1", paused_until=NOW - dt.timedelta(seconds=1))
    assert not flow.controlled(endpoint(), past, NOW), "a pause that ended bounds nothing"


@pytest.mark.parametrize(
    ("fields", "learnt", "in_flight"),
    [
        ({"max_in_flight": 5}, None, 5),
        ({"max_in_flight": 5}, 3, 3),
        ({"max_in_flight": 2}, 3, 2),
        ({}, 7, 7),
        ({"ordering": FIFO, "max_in_flight": 9}, 4, 1),
    ],
)
def test_the_tightest_in_flight_bound_wins(
    fields: dict[str, object], learnt: int | None, in_flight: int
) -> None:
    row = EndpointFlow(endpoint_id="ep_1", concurrency=learnt)
    bounds = flow.limits(endpoint(**fields), row, NOW)
    assert bounds.in_flight == in_flight
    assert flow.controlled(endpoint(**fields), row, NOW)


def test_room_is_what_the_pause_and_the_in_flight_bound_leave() -> None:
    bounds = flow.Limits(rate_per_s=10.0, in_flight=4, fifo=False, paused_until=None)
    assert flow.room(bounds, in_flight=1) == 3
    assert flow.room(bounds, in_flight=6) == 0
    free = flow.Limits(rate_per_s=10.0, in_flight=None, fifo=False, paused_until=None)
    assert flow.room(free, in_flight=50) is None, "a rate bounds by its slots, not here"
    paused = flow.Limits(None, None, False, NOW + dt.timedelta(seconds=3))
    assert flow.room(paused, in_flight=0) == 0


def step(current: int | None, outcomes: list[Outcome], **kw: object) -> adaptive.Learnt:
    args: dict[str, object] = {
        "streak": 0,
        "last_reason": None,
        "last_changed_at": None,
        "in_flight": 10,
        "ceiling": 100,
        "fast_s": 1.0,
        "now": NOW,
    }
    args.update(kw)
    return adaptive.step(
        current,
        args.pop("streak"),  # type: ignore[arg-type]
        args.pop("last_reason"),  # type: ignore[arg-type]
        args.pop("last_changed_at"),  # type: ignore[arg-type]
        outcomes,
        **args,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "outcome",
    [answer(429), answer(503), answer(None, error_class="timeout")],
)
def test_a_429_a_503_or_a_timeout_halves_the_limit_not_below_one(outcome: Outcome) -> None:
    assert step(8, [outcome]).concurrency == 4
    assert step(1, [outcome]).concurrency == 1
    first = step(None, [outcome], in_flight=12)
    assert first.concurrency == 6, "an unlimited endpoint starts from what it had in flight"
    assert first.reason is not None and first.reason.startswith("halved from 12 to 6")


def test_one_window_halves_once_however_late_its_answers_come() -> None:
    halved = NOW - dt.timedelta(seconds=5)
    sent_before = answer(429)  # started at NOW - but the limit was halved after it started
    before = Outcome(halved - dt.timedelta(milliseconds=1), 10.0, status_code=429)
    kept = step(4, [before], last_reason="halved from 8 to 4: answered 429", last_changed_at=halved)
    assert (kept.concurrency, kept.reason, kept.streak) == (4, None, 0)
    again = step(4, [sent_before], last_reason="halved from 8 to 4", last_changed_at=halved)
    assert again.concurrency == 2, "an attempt sent under the new limit halves it again"
    just = NOW - dt.timedelta(milliseconds=1)
    raised = step(4, [before], last_reason="raised from 3 to 4", last_changed_at=just)
    assert raised.concurrency == 2, "only a halving shields the attempts sent before it"


def test_a_streak_of_fast_successes_twice_the_limit_raises_it_by_one() -> None:
    assert step(4, [answer()] * 7).concurrency == 4
    assert step(4, [answer()] * 7).streak == 7
    raised = step(4, [answer()], streak=7)
    assert raised.concurrency == 5
    assert raised.reason is not None and raised.reason.startswith("raised from 4 to 5")


def test_a_slow_success_or_a_failure_ends_the_streak() -> None:
    assert step(4, [answer(), answer(ms=1500)], streak=6).streak == 0
    assert step(4, [answer(500)], streak=6) == adaptive.Learnt(4, 0, None)


def test_at_the_ceiling_the_learnt_limit_is_lifted() -> None:
    lifted = step(9, [answer()] * 18, ceiling=10)
    assert lifted.concurrency is None
    assert lifted.reason is not None and lifted.reason.startswith("lifted at 10")


def test_an_unlimited_endpoint_learns_nothing_from_successes() -> None:
    assert step(None, [answer()] * 50) == adaptive.Learnt(None, 0, None)


def test_retry_after_on_a_429_or_503_pauses_the_endpoint_for_the_longest_asked() -> None:
    until, reason = adaptive.pause(
        [answer(429, retry_after_s=2.0), answer(503, retry_after_s=5.0)], NOW
    ) or (None, None)
    assert until == NOW + dt.timedelta(seconds=5)
    assert reason == "Retry-After 5s on a 503"
    assert adaptive.pause([answer(500, retry_after_s=5.0)], NOW) is None
    assert adaptive.pause([answer(429)], NOW) is None
    long = adaptive.pause([answer(429, retry_after_s=10**9)], NOW)
    assert long is not None and long[0] == NOW + dt.timedelta(days=1), "cut to a day"
