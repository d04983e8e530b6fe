"""Prefixed ULIDs: shape, time order, monotonicity, validation."""

from __future__ import annotations

import random
import threading
import time

import pytest

from engine.ids import (
    ALPHABET,
    PREFIXES,
    InvalidIdError,
    _decode,
    _encode,
    floor_id,
    id_timestamp_ms,
    is_id,
    new_id,
)


def test_an_id_is_the_prefix_an_underscore_and_26_crockford_characters() -> None:
    value = new_id("evt")
    prefix, _, body = value.partition("_")
    assert prefix == "evt"
    assert len(body) == 26
    assert set(body) <= set(ALPHABET)
    assert is_id(value, "evt")


def test_the_prefixes_name_every_kind_of_row() -> None:
    assert dict(PREFIXES) == {
        "tenant": "ten",
        "key": "key",
        "endpoint": "ep",
        "event": "evt",
        "delivery": "dlv",
        "attempt": "att",
        "message": "msg",
        "event_type": "etype",
        "replay": "rpl",
    }
    for prefix in PREFIXES.values():
        assert is_id(new_id(prefix), prefix)


def test_the_prefixes_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        PREFIXES["event"] = "ev"  # type: ignore[index]


def test_an_id_encodes_its_millisecond_timestamp() -> None:
    assert id_timestamp_ms(new_id("ep", now_ms=1_700_000_000_123)) == 1_700_000_000_123
    assert id_timestamp_ms(new_id("ep", now_ms=0)) == 0
    assert id_timestamp_ms(new_id("ep", now_ms=2**48 - 1)) == 2**48 - 1


def test_an_id_made_now_carries_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    stamp = id_timestamp_ms(new_id("evt"))
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after


def test_sorting_ids_sorts_them_by_time() -> None:
    times = [5, 1_000, 999, 1_700_000_000_000, 2**40, 1, 2**48 - 1]
    ids = [new_id("dlv", now_ms=ms) for ms in times]
    assert [id_timestamp_ms(value) for value in sorted(ids)] == sorted(times)


def test_ids_made_in_the_same_millisecond_sort_in_creation_order() -> None:
    ids = [new_id("att", now_ms=1_700_000_000_000) for _ in range(1_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_made_concurrently_by_threads_are_all_distinct() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        batch = [new_id("evt", now_ms=42) for _ in range(500)]
        with lock:
            made.extend(batch)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 4_000


def test_ids_differ_in_their_random_part_across_milliseconds() -> None:
    first, second = new_id("ep", now_ms=10), new_id("ep", now_ms=11)
    assert first[3:13] != second[3:13]
    assert first[13:] != second[13:]


@pytest.mark.parametrize("prefix", ["", "EP", "e p", "ep_", "1ep", "a" * 17])
def test_a_malformed_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidIdError):
        new_id(prefix)


@pytest.mark.parametrize("now_ms", [-1, 2**48])
def test_a_timestamp_outside_48_bits_is_refused(now_ms: int) -> None:
    with pytest.raises(InvalidIdError):
        new_id("ep", now_ms=now_ms)


@pytest.mark.parametrize(
    "value",
    [
        "ep_01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 characters
        "ep_01ARZ3NDEKTSV4RRFFQ69G5FAVV",  # 27 characters
        "ep_01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not Crockford
        "ep_01arz3ndektsv4rrffq69g5fav",  # lowercase
        "ep_81ARZ3NDEKTSV4RRFFQ69G5FAV",  # more than 128 bits
        "ep-01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "ep_01ARZ3NDEKTSV4RRFFQ69G5FAV\n",
        "",
    ],
)
def test_is_id_refuses_anything_but_the_prefix_and_a_ulid(value: str) -> None:
    assert not is_id(value, "ep")


def test_is_id_accepts_a_well_formed_ulid() -> None:
    assert is_id("ep_01ARZ3NDEKTSV4RRFFQ69G5FAV", "ep")
    assert is_id("ep_7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "ep")


def test_reading_the_time_of_a_malformed_id_raises() -> None:
    with pytest.raises(InvalidIdError):
        id_timestamp_ms("nonsense")


def test_the_encoding_is_crockford_base32_of_every_bit() -> None:
    def reference(value: int) -> str:
        return "".join(ALPHABET[(value >> (5 * n)) & 0x1F] for n in reversed(range(26)))

    draw = random.Random(7)
    values = [0, 1, 31, 32, (1 << 128) - 1] + [draw.getrandbits(128) for _ in range(2000)]
    for value in values:
        assert _encode(value) == reference(value)
        assert _decode(_encode(value)) == value


def test_a_floor_id_sorts_before_every_id_of_its_millisecond_and_after_those_before() -> None:
    floor = floor_id("evt", 1_700_000_000_000)

    assert is_id(floor, "evt")
    assert id_timestamp_ms(floor) == 1_700_000_000_000
    assert new_id("evt", now_ms=1_699_999_999_999) < floor < new_id("evt", now_ms=1_700_000_000_000)
