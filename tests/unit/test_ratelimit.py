"""The rate-limit decision, the limits a tenant gets, lease arithmetic, the shared counter."""

from __future__ import annotations

from typing import Any

import pytest

from engine.db.models import RateLimitWindow
from engine.errors import SettingsError
from engine.tenancy import ratelimit
from engine.tenancy.ratelimit import (
    INGEST,
    MANAGEMENT,
    Decision,
    chunk,
    decide,
    granted,
    limits,
    window_start,
)
from tests.factories import make_settings

T0 = 1_800_000_000.0


def test_a_request_within_every_limit_passes_and_reports_what_is_left() -> None:
    assert decide([(10, 1), (100, 50)], T0 + 0.5) == Decision(True, 10, 9, 1)


def test_the_request_that_reaches_the_limit_still_passes() -> None:
    assert decide([(3, 3)], T0).allowed


def test_one_hit_over_any_limit_is_refused() -> None:
    refused = decide([(10, 2), (5, 6)], T0)

    assert refused == Decision(False, 5, 0, 1)


def test_the_tightest_bucket_is_reported_even_with_the_larger_limit() -> None:
    assert decide([(10, 9), (100, 50)], T0).limit == 10
    assert decide([(10, 1), (100, 95)], T0).limit == 100


@pytest.mark.parametrize(("offset", "reset_s"), [(0.0, 1), (0.001, 1), (0.999, 1)])
def test_reset_is_the_whole_seconds_left_in_the_window_never_zero(
    offset: float, reset_s: int
) -> None:
    assert decide([(1, 1)], T0 + offset).reset_s == reset_s


def test_a_longer_window_resets_at_its_own_end() -> None:
    assert decide([(1, 1)], T0 + 2.5, window_s=10).reset_s == 8


def test_a_window_starts_on_the_whole_second() -> None:
    assert window_start(T0 + 0.999) == int(T0)
    assert window_start(T0 + 1.0) == int(T0) + 1
    assert window_start(T0 + 7.5, 5) == int(T0) + 5


def test_the_settings_give_each_budget_its_credential_and_tenant_limits() -> None:
    settings = make_settings(
        HOOKLINE_RATE_LIMIT_INGEST_PER_S=5,
        HOOKLINE_RATE_LIMIT_TENANT_INGEST_PER_S=7,
        HOOKLINE_RATE_LIMIT_MANAGEMENT_PER_S=2,
        HOOKLINE_RATE_LIMIT_TENANT_MANAGEMENT_PER_S=3,
    )

    assert limits(INGEST, settings, None) == (5, 7)
    assert limits(MANAGEMENT, settings, None) == (2, 3)


def test_a_tenant_override_replaces_only_the_limits_it_names() -> None:
    settings = make_settings(HOOKLINE_RATE_LIMIT_INGEST_PER_S=5)
    overrides = {"ingest_per_s": 50, "tenant_ingest_per_s": None, "unknown": 1}

    assert limits(INGEST, settings, overrides) == (50, settings.rate_limit_tenant_ingest_per_s)


@pytest.mark.parametrize("value", ["-1", "1.5", "many", "1000001"])
def test_a_malformed_rate_limit_setting_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(HOOKLINE_RATE_LIMIT_MANAGEMENT_PER_S=value)
    assert caught.value.variable == "HOOKLINE_RATE_LIMIT_MANAGEMENT_PER_S"


def test_the_defaults_give_ingest_more_room_than_management() -> None:
    settings = make_settings()

    assert limits(INGEST, settings, None) > limits(MANAGEMENT, settings, None) > (0, 0)


@pytest.mark.parametrize(
    ("limit", "previous", "expected"),
    [
        (20, 0, 1),  # under 2 x 20 leases a second: one hit at a time, so nothing idles
        (20, 20, 1),
        (100, 0, 1),  # a small limit starts at one hit
        (100, 1000, 5),  # never more than 1/20 of the limit
        (20_000, 0, 20),  # cold: a thousandth of the limit
        (20_000, 500, 25),  # 1/20 of what this process spent the window before
        (20_000, 100_000, 1000),
    ],
)
def test_a_lease_follows_last_windows_spend_between_a_floor_and_a_cap(
    limit: int, previous: int, expected: int
) -> None:
    assert chunk(limit, 0, previous, leases_per_s=20) == expected


def test_a_lease_never_asks_for_more_than_the_counter_has_left() -> None:
    assert chunk(20_000, 19_990, 100_000, leases_per_s=20) == 10
    assert chunk(20_000, 19_999, 0, leases_per_s=20) == 1


def test_more_leases_a_second_make_smaller_ones() -> None:
    assert chunk(20_000, 0, 20_000, leases_per_s=100) == 200


@pytest.mark.parametrize(
    ("size", "counter", "expected"),
    [(10, 10, 10), (10, 95, 10), (10, 100, 10), (10, 105, 5), (10, 110, 0), (10, 500, 0)],
)
def test_a_lease_is_the_part_of_its_chunk_below_the_limit(
    size: int, counter: int, expected: int
) -> None:
    assert granted(size, counter, limit=100) == expected


def test_racing_leases_never_grant_more_than_the_limit_between_them() -> None:
    counter, grants = 0, []
    for size in [7, 30, 1, 50, 13, 9, 40, 2]:  # in whatever order the row lock lets them in
        counter += size
        grants.append(granted(size, counter, limit=100))

    assert sum(grants) == 100
    assert grants[-3:] == [0, 0, 0]


def test_a_lease_adds_its_chunk_per_bucket_and_window_in_one_statement(sqlite_db: Any) -> None:
    assert ratelimit.lease({"a": 1, "b": 5}, 100) == {"a": 1, "b": 5}
    assert ratelimit.lease({"a": 3, "b": 1}, 100) == {"a": 4, "b": 6}
    assert ratelimit.lease({"a": 2}, 101) == {"a": 2}
    assert ratelimit.lease({"b": 1}, 100) == {"b": 7}


def test_sweep_deletes_only_the_windows_before_the_cutoff(sqlite_db: Any) -> None:
    for window in (98, 99, 100):
        ratelimit.lease({"a": 1}, window)

    assert ratelimit.sweep(100) == 2
    assert [row.window_start for row in RateLimitWindow.select()] == [100]
