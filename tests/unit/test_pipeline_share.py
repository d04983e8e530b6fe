"""Each host's share of a crowded pipeline (`actors.pipeline.share`), on a clock passed in."""

from __future__ import annotations

import pytest

from actors.pipeline.share import PACE_MARGIN, UNKNOWN_PACE_WAIT_S, HostShare

SLOW, FAST = ("http", "slow.example", 80), ("http", "fast.example", 80)


def test_nothing_is_held_back_until_the_pipeline_is_crowded() -> None:
    shares = HostShare(share=4, crowded_at=100)
    shares.started([SLOW] * 99)

    kept, later = shares.split([SLOW] * 40, now=0.0)

    assert kept == list(range(40)) and later == []


def test_a_crowding_host_keeps_its_share_and_another_host_is_not_held_back() -> None:
    shares = HostShare(share=4, crowded_at=2)
    shares.started([SLOW] * 2)

    kept, later = shares.split([SLOW, FAST, SLOW, SLOW, FAST, SLOW], now=0.0)

    # The slow host held 2: two more of its claims fit its share of 4.
    assert kept == [0, 1, 2, 4]
    assert [index for index, _delay in later] == [3, 5]


def test_hosts_sharing_a_crowded_pipeline_evenly_are_not_held_back() -> None:
    hosts = [("http", f"h{n}.example", 80) for n in range(10)]
    shares = HostShare(share=4, crowded_at=100)
    shares.started(hosts * 20)  # 200 in the pipeline, 20 each: over the share of 4

    kept, later = shares.split(hosts * 5, now=0.0)

    assert len(kept) == 50 and later == []


def test_a_host_holding_half_of_a_crowded_pipeline_is_held_back_past_its_share() -> None:
    shares = HostShare(share=4, crowded_at=100)
    shares.started([SLOW] * 150 + [FAST] * 50)

    kept, later = shares.split([SLOW, FAST], now=0.0)

    assert kept == [1] and [index for index, _ in later] == [0]


def test_claims_held_back_come_back_at_the_host_s_pace_after_what_it_holds() -> None:
    shares = HostShare(share=4, crowded_at=0)
    shares.started([SLOW] * 54)
    # The host finished 40 attempts over the last 5 s, 8 a second; it holds 14.
    for n in range(40):
        shares.finished([SLOW], now=n * 0.125)
    now = 5.0

    _kept, later = shares.split([SLOW] * 3, now=now)

    # The first held back comes after 14 / 8 s, then a little faster than one every 1/8 s.
    step = 1 / (8 * PACE_MARGIN)
    assert [delay for _index, delay in later] == pytest.approx(
        [14 / 8, 14 / 8 + step, 14 / 8 + 2 * step]
    )
    # The next split goes on from there, rather than starting over.
    _kept, again = shares.split([SLOW], now=now)
    assert again[0][1] == pytest.approx(14 / 8 + 3 * step)


def test_a_host_that_has_answered_nothing_yet_gets_its_claims_back_in_a_second() -> None:
    shares = HostShare(share=4, crowded_at=0)
    shares.started([FAST] * 512)

    _kept, later = shares.split([FAST] * 400, now=10.0)

    # Paced at its share a second, the last would wait 128 s; by a second it has a pace.
    assert [delay for _index, delay in later] == [UNKNOWN_PACE_WAIT_S] * 400
    shares.finished([FAST] * 500, now=10.5)
    _kept, again = shares.split([FAST] * 20, now=11.0)
    assert max(delay for _index, delay in again) < 0.1, "then at its measured pace"


def test_a_few_quick_answers_make_no_pace() -> None:
    shares = HostShare(share=1, crowded_at=0)
    shares.started([FAST] * 5)
    shares.finished([FAST, FAST], now=1.0)  # two answers within a millisecond

    _kept, later = shares.split([FAST], now=1.001)

    # Not 2,000 a second, nor 4 (two over half a second): no pace yet.
    assert later[0][1] == UNKNOWN_PACE_WAIT_S
    shares.finished([FAST], now=1.3)
    _kept, later = shares.split([FAST], now=1.5)
    assert later[0][1] == pytest.approx(2 / 6), "three over half a second, behind the two held"


def test_a_host_just_starting_to_answer_a_burst_gets_its_claims_back_in_a_second() -> None:
    shares = HostShare(share=64, crowded_at=0)
    shares.started([FAST] * 600)  # a fan-out sent 600 to one host at once
    shares.finished([FAST] * 3, now=10.0)  # its first answers

    _kept, later = shares.split([FAST] * 300, now=10.1)

    # Paced at 3 answers over half a second, the last came back after 380 s (CI: up to 632).
    assert [delay for _index, delay in later] == [UNKNOWN_PACE_WAIT_S] * 300


def test_finished_attempts_free_the_share() -> None:
    shares = HostShare(share=2, crowded_at=0)
    shares.started([SLOW, SLOW])
    assert shares.split([SLOW], now=0.0)[0] == []

    shares.finished([SLOW], now=0.1)

    assert shares.split([SLOW], now=0.2)[0] == [0]
    assert shares.held[SLOW] == 1 and shares.total == 1


def test_a_share_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        HostShare(share=0, crowded_at=0)
