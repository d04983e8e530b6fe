"""The retry policy: jittered schedule, Retry-After, expiry, 410, schedule parsing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from engine.retry import (
    DEFAULT_SCHEDULE_S,
    JITTER,
    MAX_RETRY_AFTER_S,
    Decision,
    InvalidScheduleError,
    decide,
    next_delay,
    parse_retry_after,
    parse_schedule,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
THREE_DAYS_S = 3 * 86400
DAY_S = 86400


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def judge(**overrides: object) -> Decision:
    """Decide with defaults: the first attempt failed with a 500 just now."""
    arguments: dict[str, object] = {
        "success": False,
        "status_code": 500,
        "attempts_made": 1,
        "schedule": DEFAULT_SCHEDULE_S,
        "first_attempt_at": T0,
        "now": T0,
        "max_age_s": THREE_DAYS_S + DAY_S,
        "rand": fixed(0.5),
    }
    arguments.update(overrides)
    return decide(**arguments)  # type: ignore[arg-type]


def test_the_default_schedule_is_the_designed_one() -> None:
    assert DEFAULT_SCHEDULE_S == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert JITTER == 0.2
    assert MAX_RETRY_AFTER_S == 86400


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_jitter_spreads_each_delay_within_twenty_percent(rand: float, factor: float) -> None:
    for attempts_made, base in enumerate(DEFAULT_SCHEDULE_S, start=1):
        delay = next_delay(attempts_made, DEFAULT_SCHEDULE_S, rand=fixed(rand))
        assert delay == pytest.approx(base * factor)


def test_the_default_random_source_stays_within_the_jitter_bounds() -> None:
    delays = [next_delay(2, DEFAULT_SCHEDULE_S) for _ in range(1_000)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)


def test_jitter_can_be_switched_off() -> None:
    assert next_delay(3, DEFAULT_SCHEDULE_S, rand=fixed(0.99), jitter=0) == 1800


def test_the_schedule_is_exhausted_after_its_last_delay() -> None:
    assert next_delay(9, DEFAULT_SCHEDULE_S, rand=fixed(0.5)) == 86400
    assert next_delay(10, DEFAULT_SCHEDULE_S, rand=fixed(0.5)) is None
    assert next_delay(1, ()) is None


@pytest.mark.parametrize("attempts_made", [0, -1])
def test_a_delay_needs_at_least_one_attempt(attempts_made: int) -> None:
    with pytest.raises(ValueError):
        next_delay(attempts_made, DEFAULT_SCHEDULE_S)


def test_a_success_succeeds_whatever_came_before() -> None:
    assert judge(success=True, status_code=200, attempts_made=50) == Decision("succeed")


def test_a_410_disables_the_endpoint() -> None:
    assert judge(status_code=410) == Decision("disable", reason="endpoint answered 410 Gone")


def test_a_failure_is_retried_after_the_scheduled_delay() -> None:
    assert judge(attempts_made=2) == Decision("retry", delay_s=300.0)
    assert judge(status_code=None) == Decision("retry", delay_s=5.0)


def test_a_failure_after_the_last_delay_is_quarantined_as_exhausted() -> None:
    assert judge(attempts_made=10) == Decision("quarantine", reason="exhausted")


def test_a_retry_after_longer_than_the_schedule_is_honoured_on_429_and_503() -> None:
    for status in (429, 503):
        assert judge(status_code=status, retry_after_s=120) == Decision(
            "retry", delay_s=120, reason="retry-after"
        )


def test_a_retry_after_never_brings_a_retry_earlier_than_the_schedule() -> None:
    assert judge(status_code=429, attempts_made=3, retry_after_s=10) == Decision(
        "retry", delay_s=1800.0
    )


def test_a_retry_after_is_capped_at_a_day() -> None:
    decision = judge(status_code=503, retry_after_s=10 * DAY_S)
    assert decision == Decision("retry", delay_s=MAX_RETRY_AFTER_S, reason="retry-after")
    assert judge(status_code=503, retry_after_s=float("inf")).delay_s == MAX_RETRY_AFTER_S


def test_a_retry_after_on_other_statuses_is_ignored() -> None:
    assert judge(status_code=500, retry_after_s=600) == Decision("retry", delay_s=5.0)


def test_a_retry_landing_past_the_age_limit_is_quarantined_as_expired() -> None:
    now = T0 + timedelta(seconds=DAY_S)
    assert judge(attempts_made=9, now=now, max_age_s=2 * DAY_S - 1) == Decision(
        "quarantine", reason="expired"
    )
    assert judge(attempts_made=9, now=now, max_age_s=2 * DAY_S).action == "retry"


def test_a_long_retry_after_can_expire_a_delivery() -> None:
    assert judge(status_code=429, retry_after_s=3600, max_age_s=1800) == Decision(
        "quarantine", reason="expired"
    )


def test_naive_datetimes_are_read_as_utc() -> None:
    naive_start = datetime(2026, 3, 1, 12, 0, 0)
    assert judge(first_attempt_at=naive_start, now=T0 + timedelta(seconds=100), max_age_s=104) == (
        Decision("quarantine", reason="expired")
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 01 Mar 2026 12:05:00 GMT", 300.0),
        ("Sun, 01 Mar 2026 12:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Sun, 01 Mar 2026 11:59:00 GMT", None),
        ("Sun, 99 Foo 2026 12:05:00 GMT", None),
        ("１２０", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value, now=T0) == expected


def test_an_absurdly_long_retry_after_reads_as_forever() -> None:
    assert parse_retry_after("9" * 5000, now=T0) == float("inf")


def test_an_http_date_is_measured_from_a_naive_utc_now() -> None:
    naive_now = datetime(2026, 3, 1, 12, 0, 0)
    assert parse_retry_after("Sun, 01 Mar 2026 12:01:00 GMT", now=naive_now) == 60.0


def test_a_schedule_is_parsed_from_comma_separated_seconds() -> None:
    assert parse_schedule("5,300,1800") == (5, 300, 1800)
    assert parse_schedule(" 5 , 300 ") == (5, 300)
    assert parse_schedule("604800") == (604800,)
    assert parse_schedule(",".join(["1"] * 50)) == (1,) * 50


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "5,,300",
        "5,",
        "0",
        "-5",
        "1.5",
        "five",
        "604801",
        ",".join(["1"] * 51),
        "9" * 5000,
    ],
)
def test_a_malformed_schedule_is_refused(text: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse_schedule(text)
