"""Each host's share of a crowded pipeline (`actors.pipeline.share`), on a clock passed in."""

from __future__ import annotations

import pytest

from actors.pipeline.share import HOLD_S, PACE_MARGIN, HostShare

SLOW, FAST = ("http", "slow.example", 80), ("http", "fast.example", 80)


def test_nothing_is_held_back_until_the_pipeline_is_crowded() -> None:
    shares = HostShare(share=4, crowded_at=100)
    shares.started([SLOW] * 99)

    kept, later = shares.split([SLOW] * 40, now=0.0)

    assert kept == list(range(40)) and later == []


def slow_host(shares: HostShare, per_s: float, held: int, now: float = 5.0) -> None:
    """Make SLOW a host that answered `per_s` a second over the last 5 s and holds `held`."""
    answered = int(per_s * 5)
    shares.started([SLOW] * (answered + held))
    for n in range(answered):
        shares.finished([SLOW], now=now - 5 + n / per_s)


def test_a_slow_host_keeps_hold_s_of_its_answers_and_another_host_is_not_held_back() -> None:
    shares = HostShare(share=4, crowded_at=2)
    limit = int(2 * HOLD_S)  # HOLD_S seconds at 2 a second
    slow_host(shares, per_s=2, held=limit - 2)
    shares.started([FAST] * 2)  # the slow host holds most of the pipeline

    kept, later = shares.split([SLOW, FAST, SLOW, SLOW, FAST, SLOW], now=5.0)

    assert kept == [0, 1, 2, 4]
    assert [index for index, _delay in later] == [3, 5]


def test_a_host_never_keeps_fewer_than_its_share() -> None:
    shares = HostShare(share=int(HOLD_S) + 3, crowded_at=0)
    slow_host(shares, per_s=1, held=0)  # HOLD_S seconds at 1 a second: below the share

    kept, later = shares.split([SLOW] * (shares.share + 1), now=5.0)

    assert kept == list(range(shares.share)) and len(later) == 1


def test_a_fast_host_in_a_crowded_pipeline_is_not_held_back() -> None:
    shares = HostShare(share=4, crowded_at=100)
    shares.started([FAST] * 1000)
    for n in range(900):  # 900 in the last second
        shares.finished([FAST], now=4.0 + n / 900)

    kept, later = shares.split([FAST] * 50, now=5.0)

    assert len(kept) == 50 and later == []


def test_hosts_sharing_a_crowded_pipeline_are_not_held_back_however_slow() -> None:
    hosts = [("http", f"h{n}.example", 80) for n in range(10)]
    shares = HostShare(share=4, crowded_at=100)
    shares.started(hosts * 20)  # 200 in the pipeline, 20 each, none answered yet

    kept, later = shares.split(hosts * 5, now=0.0)

    assert len(kept) == 50 and later == []


def test_claims_held_back_come_back_at_the_host_s_pace_after_what_it_holds() -> None:
    shares = HostShare(share=4, crowded_at=0)
    held = int(8 * HOLD_S) + 4  # over HOLD_S seconds at 8 a second
    shares.started([SLOW] * (40 + held))
    # The host finished 40 attempts over the last 5 s, 8 a second.
    for n in range(40):
        shares.finished([SLOW], now=n * 0.125)
    now = 5.0

    _kept, later = shares.split([SLOW] * 3, now=now)

    # The first held back comes after what it holds (at 8 a second), then a little
    # faster than one every 1/8 s.
    step = 1 / (8 * PACE_MARGIN)
    first = held / 8
    assert [delay for _index, delay in later] == pytest.approx(
        [first, first + step, first + 2 * step]
    )
    # The next split goes on from there, rather than starting over.
    _kept, again = shares.split([SLOW], now=now)
    assert again[0][1] == pytest.approx(first + 3 * step)


def test_a_host_that_has_answered_nothing_yet_is_paced_at_its_share_a_second() -> None:
    shares = HostShare(share=4, crowded_at=0)
    held = int(4 * HOLD_S)
    shares.started([SLOW] * held)

    _kept, later = shares.split([SLOW, SLOW], now=10.0)

    assert [delay for _index, delay in later] == pytest.approx(
        [held / 4, held / 4 + 1 / (4 * PACE_MARGIN)]
    )


def test_a_few_quick_answers_do_not_make_a_pace_of_thousands() -> None:
    shares = HostShare(share=1, crowded_at=0)
    held = int(4 * HOLD_S)
    shares.started([FAST] * (held + 2))
    shares.finished([FAST, FAST], now=1.0)  # two answers within a millisecond

    _kept, later = shares.split([FAST], now=1.001)

    # Two over at least half a second: 4 a second (not 2,000).
    assert later[0][1] == pytest.approx(held / 4)


def test_finished_attempts_free_room() -> None:
    shares = HostShare(share=2, crowded_at=0)
    held = int(2 * HOLD_S)  # no answers yet: paced at 2 a second
    shares.started([SLOW] * held)
    assert shares.split([SLOW], now=0.0)[0] == []

    shares.finished([SLOW], now=0.1)

    assert shares.split([SLOW], now=0.2)[0] == [0]
    assert shares.held[SLOW] == held - 1 and shares.total == held - 1


def test_a_share_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        HostShare(share=0, crowded_at=0)
