"""A replay lane's token bucket (`engine.replays.pacing.refilled`)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from engine.db.models import ReplayLane
from engine.replays import pacing

NOW = dt.datetime(2026, 12, 2, 12, 0, 0)


def lane(**fields: object) -> ReplayLane:
    return ReplayLane(endpoint_id="ep_1", rate_per_s=100.0, **fields)


def test_the_bucket_refills_at_95_percent_of_the_rate_up_to_about_a_twentieth_of_a_second() -> None:
    row = lane(tokens=0.0, tokens_at=NOW)
    later = NOW + dt.timedelta(milliseconds=25)
    assert pacing.refilled(row, 100.0, later) == pytest.approx(2.375), "at 95 % of the rate"
    assert pacing.refilled(row, 100.0, NOW + dt.timedelta(seconds=9)) == pytest.approx(5.99)
    assert pacing.capacity(20.0) == pytest.approx(1.99), "room for 19 more in its second"
    assert pacing.capacity(0.5) == 1.0, "one token at the least"
    assert pacing.refilled(lane(tokens=0.0), 100.0, NOW) == pytest.approx(5.99), "starts full"


@pytest.mark.parametrize("rate", [1.0, 20.0, 100.0, 1000.0])
@pytest.mark.parametrize("every_s", [0.005, 0.025, 0.05])
def test_no_second_of_paces_passes_the_rate_and_nearly_all_of_it_is_used(
    rate: float, every_s: float
) -> None:
    row = lane(tokens=0.0, tokens_at=None)
    jitter, t, sent_at = random.Random(f"{rate}/{every_s}"), 0.0, []
    while t < 20.0:
        now = NOW + dt.timedelta(seconds=t)
        tokens = pacing.refilled(row, rate, now)
        n = math.floor(tokens + 1e-9)
        row.tokens, row.tokens_at = tokens - n, now
        sent_at += [t] * n
        t += every_s * jitter.uniform(0.5, 1.0)
    most, start = 0, 0
    for end, sent in enumerate(sent_at):
        while sent_at[start] <= sent - 1.0:
            start += 1
        most = max(most, end - start + 1)
    assert most <= rate, "the 10 % above it is left to the way there"
    assert len(sent_at) >= 0.94 * rate * 20 - 1
