"""`engine.db.batching.BackgroundCommit`: coroutines share flushes run on threads of their own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.db.batching import BackgroundCommit
from tests.unit.gates import WAIT_S, Gate

Flush = Gate


class Then(Gate):
    """A `then` that records its batches and their results; `hold()` makes it wait."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[list[int]] = []

    def __call__(self, items: list[int], results: list[int]) -> None:  # type: ignore[override]
        self.results.append(list(results))
        self.enter(items)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), WAIT_S))


def test_a_lone_submission_is_flushed_and_answered() -> None:
    flush = Flush()
    group = BackgroundCommit(flush)

    assert run(lambda: group.submit(4)) == 40
    assert flush.batches == [[4]]


def test_submissions_made_during_a_flush_share_the_next_one() -> None:
    flush = Flush()
    group = BackgroundCommit(flush)

    async def main() -> list[int]:
        flush.hold()
        first = asyncio.ensure_future(group.submit(0))
        await until(flush.entered.is_set)
        rest = [asyncio.ensure_future(group.submit(n)) for n in range(1, 6)]
        await until(lambda: group._queue.qsize() == 5)
        flush.opened.set()
        return list(await asyncio.gather(first, *rest))

    assert run(main) == [0, 10, 20, 30, 40, 50]
    assert flush.batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failed_flush_fails_its_own_batch_and_no_other() -> None:
    flush = Flush()
    group = BackgroundCommit(flush)

    async def main() -> tuple[list[Any], int]:
        flush.hold()
        held = asyncio.ensure_future(group.submit(7))
        await until(flush.entered.is_set)
        doomed = [asyncio.ensure_future(group.submit(n)) for n in (-1, 2)]
        await until(lambda: group._queue.qsize() == 2)
        flush.opened.set()
        failed = await asyncio.gather(*doomed, return_exceptions=True)
        return failed, await held

    failed, held = run(main)
    assert held == 70
    assert [type(error) for error in failed] == [ConnectionError, ConnectionError]
    assert run(lambda: group.submit(3)) == 30  # the thread lives on


def test_a_flush_answering_the_wrong_count_fails_the_batch() -> None:
    group: BackgroundCommit[int, int] = BackgroundCommit(lambda items: [1])

    async def main() -> list[Any]:
        return list(await asyncio.gather(group.submit(1), group.submit(2), return_exceptions=True))

    outcomes = run(main)
    assert any(isinstance(outcome, RuntimeError) for outcome in outcomes)


def test_then_runs_before_the_submitter_is_answered() -> None:
    flush, then = Flush(), Then()
    group = BackgroundCommit(flush, then)

    assert run(lambda: group.submit(5)) == 50
    assert then.batches == [[5]]
    assert then.results == [[50]]


def test_submissions_made_while_then_runs_share_the_next_flush() -> None:
    flush, then = Flush(), Then()
    group = BackgroundCommit(flush, then)

    async def main() -> list[int]:
        then.hold()
        first = asyncio.ensure_future(group.submit(1))
        await until(then.entered.is_set)  # 1 is committed; its `then` waits
        rest = [asyncio.ensure_future(group.submit(n)) for n in (2, 3)]
        await until(lambda: group._queue.qsize() == 2)
        assert not first.done(), "answered only after its `then`"
        then.opened.set()
        return list(await asyncio.gather(first, *rest))

    assert run(main) == [10, 20, 30]
    assert flush.batches == [[1], [2, 3]]
    assert then.batches == [[1], [2, 3]]
    assert then.results == [[10], [20, 30]]


def test_a_failed_flush_skips_then() -> None:
    then = Then()
    group = BackgroundCommit(Flush(), then)

    with pytest.raises(ConnectionError):
        run(lambda: group.submit(-1))
    assert then.batches == []


def test_a_failing_then_still_answers_the_batch() -> None:
    def then(items: list[int], results: list[int]) -> None:
        raise RuntimeError("announcing failed")

    group = BackgroundCommit(Flush(), then)

    assert run(lambda: group.submit(2)) == 20


def test_a_cancelled_submitter_leaves_the_rest_of_its_batch_answered() -> None:
    flush = Flush()
    group = BackgroundCommit(flush)

    async def main() -> int:
        flush.hold()
        held = asyncio.ensure_future(group.submit(0))
        await until(flush.entered.is_set)
        gone = asyncio.ensure_future(group.submit(1))
        kept = asyncio.ensure_future(group.submit(2))
        await until(lambda: group._queue.qsize() == 2)
        gone.cancel()
        flush.opened.set()
        await held
        return await kept

    assert run(main) == 20
    assert flush.batches == [[0], [1, 2]]  # the row of a cancelled request is stored all the same


def test_submitters_on_two_event_loops_share_a_flush_and_each_is_answered_on_its_own() -> None:
    flush = Flush()
    group = BackgroundCommit(flush)
    answers: dict[str, Any] = {}
    flush.hold()
    first = threading.Thread(target=lambda: answers.update(first=run(lambda: group.submit(0))))
    first.start()
    assert flush.entered.wait(WAIT_S)

    def other(name: str, item: int) -> None:
        async def main() -> tuple[int, bool]:
            loop = asyncio.get_running_loop()
            answer = await group.submit(item)
            return answer, asyncio.get_running_loop() is loop

        answers[name] = run(main)

    threads = [threading.Thread(target=other, args=(f"t{n}", n)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for _ in range(2000):
        if group._queue.qsize() == 2:
            break
        threading.Event().wait(0.005)
    flush.opened.set()
    for thread in (first, *threads):
        thread.join(WAIT_S)

    assert answers == {"first": 0, "t1": (10, True), "t2": (20, True)}
    assert [sorted(batch) for batch in flush.batches] == [[0], [1, 2]]  # 1 and 2 race


@pytest.mark.parametrize("with_then", [False, True])
def test_many_concurrent_submitters_each_get_their_own_answer(with_then: bool) -> None:
    flush = Flush()
    group = BackgroundCommit(flush, Then() if with_then else None)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(group.submit(n) for n in range(500))))

    assert run(main) == [n * 10 for n in range(500)]
    assert sorted(item for call in flush.batches for item in call) == list(range(500))
    assert len(flush.batches) < 500  # they were batched
