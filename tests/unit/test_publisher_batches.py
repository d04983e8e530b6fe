"""`Publisher.enqueue_many`: `deliver` and `fan_out` ids go `deliver_batch` per message.

The other kinds go one id per message.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from actors.broker import Publisher
from engine.settings import Settings
from tests.factories import make_settings


class FakeActor:
    """Remembers what was sent; raises on the `fail_on`-th send (1-based) and after."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.sent: list[Any] = []
        self.tries = 0
        self.fail_on = fail_on

    def send(self, *args: Any) -> None:
        self.tries += 1
        if self.fail_on is not None and self.tries >= self.fail_on:
            raise ConnectionError("the broker went away")
        self.sent.append(args)


def publisher(batch: int, **actors: FakeActor) -> Publisher:
    kinds = ("fan_out", "deliver", "verify_endpoint", "supervise", "alert")
    all_actors = {kind: actors.get(kind, FakeActor()) for kind in kinds}
    broker = SimpleNamespace(get_actor=all_actors.__getitem__)  # actors found by name
    settings = Settings().with_overrides(deliver_batch=batch)
    return Publisher(broker, settings)  # type: ignore[arg-type]


def ids(count: int) -> list[str]:
    return [f"dlv_{n}" for n in range(count)]


@pytest.mark.parametrize("kind", ["deliver", "fan_out"])
@pytest.mark.parametrize(("count", "batch"), [(7, 3), (6, 3), (1, 50), (50, 50), (120, 50)])
def test_batched_ids_go_out_in_lists_of_at_most_deliver_batch(
    count: int, batch: int, kind: str
) -> None:
    deliver = FakeActor()

    confirmed = publisher(batch, **{kind: deliver}).enqueue_many(kind, ids(count))

    assert confirmed == count
    assert len(deliver.sent) == math.ceil(count / batch)
    messages = [args for args in deliver.sent]
    assert all(len(args) == 1 and isinstance(args[0], list) for args in messages)
    assert all(len(args[0]) <= batch for args in messages)
    assert [one for (chunk,) in messages for one in chunk] == ids(count), "in order, once each"


def test_the_batch_size_comes_from_the_environment() -> None:
    settings = make_settings(HOOKLINE_DELIVER_BATCH="4")
    deliver = FakeActor()
    broker = SimpleNamespace(get_actor={"deliver": deliver}.__getitem__)

    assert Publisher(broker, settings).enqueue_many("deliver", ids(10)) == 10  # type: ignore[arg-type]

    assert [len(chunk) for (chunk,) in deliver.sent] == [4, 4, 2]


def test_a_batch_of_one_still_sends_lists() -> None:
    deliver = FakeActor()

    assert publisher(1, deliver=deliver).enqueue_many("deliver", ids(3)) == 3

    assert deliver.sent == [(["dlv_0"],), (["dlv_1"],), (["dlv_2"],)]


@pytest.mark.parametrize("kind", ["verify_endpoint", "alert"])
def test_other_kinds_send_one_id_per_message(kind: str) -> None:
    actor = FakeActor()

    confirmed = publisher(3, **{kind: actor}).enqueue_many(kind, ["a", "b", "c", "d"])

    assert confirmed == 4
    assert actor.sent == [("a",), ("b",), ("c",), ("d",)]


def test_nothing_to_publish_sends_nothing() -> None:
    deliver = FakeActor()

    assert publisher(3, deliver=deliver).enqueue_many("deliver", []) == 0
    assert deliver.tries == 0


@pytest.mark.parametrize(("fail_on", "confirmed"), [(1, 0), (2, 3), (3, 6)])
def test_a_failed_deliver_send_stops_and_answers_the_ids_confirmed(
    fail_on: int, confirmed: int
) -> None:
    deliver = FakeActor(fail_on=fail_on)

    answered = publisher(3, deliver=deliver).enqueue_many("deliver", ids(8))

    assert answered == confirmed
    assert deliver.tries == fail_on, "nothing is tried after the first failure"
    assert [one for (chunk,) in deliver.sent for one in chunk] == ids(confirmed)


def test_a_failed_send_of_another_kind_answers_the_ids_confirmed() -> None:
    verify = FakeActor(fail_on=3)

    answered = publisher(50, verify_endpoint=verify).enqueue_many(
        "verify_endpoint", ["e1", "e2", "e3", "e4"]
    )

    assert answered == 2
    assert verify.tries == 3
    assert verify.sent == [("e1",), ("e2",)]
