"""`engine.db.batching.GroupCommit`: submissions share one flush; each gets its own answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.db.batching import GroupCommit
from tests.unit.gates import Gate


def wait_until_queued(group: GroupCommit[int, int], count: int) -> None:
    for _ in range(1000):
        with group._lock:
            if len(group._queued) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} submissions never queued")


def test_a_lone_submission_is_flushed_at_once_by_its_own_thread() -> None:
    gate = Gate()
    group = GroupCommit(gate)

    assert group.submit(4) == 40
    assert gate.batches == [[4]]


def test_submissions_made_during_a_flush_share_the_next_one() -> None:
    gate = Gate()
    group = GroupCommit(gate)
    gate.hold()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(group.submit, 0)
        assert gate.entered.wait(10)
        rest = [pool.submit(group.submit, n) for n in range(1, 6)]
        wait_until_queued(group, 5)
        gate.opened.set()

        answers = [first.result(10)] + [future.result(10) for future in rest]

    assert answers == [0, 10, 20, 30, 40, 50], "each thread gets its own item's result"
    assert gate.batches[0] == [0]
    assert sorted(gate.batches[1]) == [1, 2, 3, 4, 5]
    assert len(gate.batches) == 2


def test_a_failed_flush_fails_every_submission_of_its_batch_and_no_other() -> None:
    gate = Gate()
    group = GroupCommit(gate)
    gate.hold()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, 1)
        assert gate.entered.wait(10)
        doomed = [pool.submit(group.submit, n) for n in (-1, 2)]
        wait_until_queued(group, 2)
        gate.opened.set()

        assert first.result(10) == 10
        for future in doomed:
            with pytest.raises(ConnectionError):
                future.result(10)

    assert group.submit(3) == 30, "the next flush runs as usual"


def test_many_threads_get_every_item_flushed_exactly_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def flush(items: list[int]) -> list[int]:
        with lock:
            seen.extend(items)
        return [-item for item in items]

    group = GroupCommit(flush)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(group.submit, range(2000)))

    assert answers == [-n for n in range(2000)]
    assert sorted(seen) == list(range(2000))


def test_a_flush_answering_the_wrong_number_of_results_is_an_error() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [])

    with pytest.raises(RuntimeError, match="0 results for 1"):
        group.submit(1)


def test_then_runs_before_its_batch_is_answered_while_the_next_batch_flushes() -> None:
    flushed: list[list[int]] = []
    next_flush_started = threading.Event()
    answered_before_then: list[bool] = []
    answers: dict[int, int] = {}
    then_done = threading.Event()

    def flush(items: list[int]) -> list[int]:
        flushed.append(list(items))
        if len(flushed) == 2:
            next_flush_started.set()
        return [item * 10 for item in items]

    def then(items: list[int], results: list[int]) -> None:
        if items == [1]:
            # The second submission leads its own flush while this stage still runs.
            assert next_flush_started.wait(10)
            answered_before_then.append(1 in answers)
            then_done.set()

    group: GroupCommit[int, int] = GroupCommit(flush, then=then)

    def submit(item: int) -> None:
        answers[item] = group.submit(item)

    first = threading.Thread(target=submit, args=(1,))
    first.start()
    for _ in range(1000):
        if flushed:
            break
        threading.Event().wait(0.005)
    second = threading.Thread(target=submit, args=(2,))
    second.start()
    first.join(10)
    second.join(10)

    assert flushed == [[1], [2]]
    assert then_done.is_set() and answered_before_then == [False]
    assert answers == {1: 10, 2: 20}


def test_then_gets_what_went_in_skips_a_failed_flush_and_cannot_fail_a_request() -> None:
    seen: list[tuple[list[int], list[int]]] = []

    def flush(items: list[int]) -> list[int]:
        if -1 in items:
            raise ConnectionError("the database went away")
        return [item * 10 for item in items]

    def then(items: list[int], results: list[int]) -> None:
        seen.append((items, results))
        raise RuntimeError("publishing failed")

    group: GroupCommit[int, int] = GroupCommit(flush, then=then)

    assert group.submit(3) == 30
    with pytest.raises(ConnectionError):
        group.submit(-1)

    assert seen == [([3], [30])]
