"""A rate as slots (`engine.deliveries.slots`): what releases give, and what may be sent."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random

import pytest

from engine.deliveries import slots

NOW = dt.datetime(2026, 12, 3, 12, 0, 0)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def test_a_first_release_gives_slots_from_its_lead_spaced_at_95_percent_of_the_rate() -> None:
    given = slots.assign(None, 50.0, NOW, most=500)
    assert given[0] == at(slots.LEAD_S), "no burst: nothing saved up"
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(given)]
    assert gaps == pytest.approx([1 / 47.5] * len(gaps), abs=1e-6)
    assert given[-1] <= at(slots.LEAD_S + slots.LOOKAHEAD_S)
    assert given[-1] + dt.timedelta(seconds=1 / 47.5) > at(slots.LEAD_S + slots.LOOKAHEAD_S)
    assert len(slots.assign(None, 50.0, NOW, most=3)) == 3, "the room bounds it"
    assert slots.assign(None, 50.0, NOW, most=0) == []


def test_a_release_goes_on_from_the_next_free_slot_and_gives_nothing_beyond_its_lookahead() -> None:
    ahead = at(slots.LEAD_S + slots.LOOKAHEAD_S + 0.01)
    assert slots.assign(ahead, 50.0, NOW, most=500) == []
    later = slots.assign(at(0.2), 50.0, NOW, most=500)
    assert later[0] == at(0.2)
    stale = slots.assign(at(-5.0), 50.0, NOW, most=500)
    assert stale[0] == at(slots.LEAD_S), "time no release used is not given as a burst"


def test_a_send_may_start_up_to_late_s_after_its_slot() -> None:
    slot = at(1.0)
    assert slots.wait_s(slot, NOW) == pytest.approx(1.0)
    assert slots.wait_s(slot, at(1.5)) == 0.0
    assert slots.missed(slot, at(1.0)) is None
    assert slots.missed(slot, at(1.0 + slots.LATE_S)) is None
    assert slots.missed(slot, at(1.2)) == pytest.approx(0.2)


@pytest.mark.parametrize("rate", [1, 3, 7, 10, 11, 20, 50, 100, 1000, 10000])
@pytest.mark.parametrize("release_every_s", [0.01, 0.05, 0.15, 0.3])
def test_no_second_of_sends_passes_the_rate_and_a_tenth_less_a_twentieth(
    rate: int, release_every_s: float
) -> None:
    """Releases come at random, up to twice `release_every_s` apart; each send starts at its
    slot or up to 0.3 s after it, and one later than its rate allows is given back, not sent.
    At most the rate + 10 % in any second, less a twentieth of the rate left to the way
    there; without that lateness (`LATE_S`), at most the rate itself."""
    draw = random.Random(f"{rate}/{release_every_s}")
    allowed_s = slots.late_s(rate)
    sent, strict, next_slot, t = [], [], None, 0.0
    while t < 20.0:
        for slot in slots.assign(next_slot, rate, at(t), most=10**6):
            next_slot = slot + dt.timedelta(seconds=slots.spacing_s(rate))
            start = slot + dt.timedelta(seconds=draw.choice([0.0, draw.uniform(0.0, 0.3)]))
            if slots.missed(slot, start, allowed_s) is None:
                sent.append((start - NOW).total_seconds())
            if slots.missed(slot, start) is None:
                strict.append((start - NOW).total_seconds())
        t += release_every_s * draw.uniform(0.1, 2.0)
    assert slots.LATE_S <= allowed_s <= slots.MAX_LATE_S
    assert most_in_a_second(sorted(sent)) <= math.floor(rate * 1.1) - math.floor(rate * 0.05)
    assert most_in_a_second(sorted(strict)) <= rate


@pytest.mark.parametrize("rate", [1, 20, 50, 1000])
@pytest.mark.parametrize("release_every_s", [0.05, 0.15, 0.25])
def test_releases_that_come_late_lose_none_of_the_rate(rate: int, release_every_s: float) -> None:
    """A bucket of a twentieth of a second released 3.5 of 50 a pass: 23/s at 150 ms apart."""
    sent, next_slot, t = 0, None, 0.0
    while t < 20.0:
        given = slots.assign(next_slot, rate, at(t), most=500)
        if given:
            next_slot = given[-1] + dt.timedelta(seconds=slots.spacing_s(rate))
            sent += sum(1 for slot in given if slot <= at(20.0))
        t += release_every_s
    assert sent >= 0.94 * rate * 20 - 2


def most_in_a_second(times: list[float]) -> int:
    most, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most
