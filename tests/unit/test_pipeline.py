"""The attempt pipeline: sends on a real event loop, records on its recorder thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import peewee
import pytest
import structlog

from actors.pipeline import Pipeline, RecordingFailed, weigh
from engine.deliveries.client import Outcome
from engine.retry import Decision
from tests.unit.pipeline_fakes import (
    WAIT_S,
    AfterRecord,
    RecordMany,
    Sender,
    claim,
    heavy,
    in_thread,
    ready,
    request,
    wait_for,
)


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    """Every log event of the test, captured instead of rendered."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A real event loop running in its own thread, as the AsyncIO middleware runs one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    yield loop

    async def cancel_the_rest() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(WAIT_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT_S)
    assert not thread.is_alive()
    loop.close()


@pytest.fixture
def make_pipeline(loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., Pipeline]]:
    """Build pipelines; every one is drained (its recorder stopped) at teardown."""
    made: list[Pipeline] = []

    def make(
        record: Any = None,
        after_record: Any = None,
        *,
        handoff_s: float = WAIT_S,
        max_in_flight: int = 100,
        connection: Callable[[], Any] = contextlib.nullcontext,
    ) -> Pipeline:
        pipeline = Pipeline(
            record=record or RecordMany(),
            after_record=after_record or AfterRecord(),
            connection=connection,
            handoff_s=handoff_s,
            max_in_flight=max_in_flight,
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.drain(0.0)


def run(pipeline: Pipeline, loop: asyncio.AbstractEventLoop, send: Sender, work: list[Any]) -> int:
    """Reserve room for the work, as the actors do, then run it."""
    pipeline.reserve(len(work))
    return pipeline.run(loop, send, work)


def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Return once the loop ran everything handed to it before the call, and one step more."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(WAIT_S)


def test_when_all_answer_quickly_run_returns_zero_after_the_batch_is_recorded(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, after = RecordMany(), AfterRecord()
    pipeline = make_pipeline(record, after)
    send = Sender()
    work = [(claim(n), request(0.01, status=200 if n % 2 else 503)) for n in range(4)]

    handed_off = run(pipeline, loop, send, work)

    # Nothing to wait for: by the time run() returns, every attempt is recorded and reported.
    assert handed_off == 0
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2", "dlv_3"]
    assert len(send.sent) == 4
    assert {i: d.action for i, _o, d in after.calls} == {
        "dlv_0": "retry",
        "dlv_1": "succeed",
        "dlv_2": "retry",
        "dlv_3": "succeed",
    }
    assert pipeline.in_flight == 0


def test_run_with_no_work_returns_at_once(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record)

    assert pipeline.run(loop, Sender(), []) == 0
    assert record.calls == 0 and pipeline.in_flight == 0


def test_a_send_slower_than_the_handoff_is_handed_off_and_recorded_later(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    logs: list[dict[str, Any]],
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record, handoff_s=0.2)
    work = [(claim(0), request(0.01)), (claim(1), request(0.8)), (claim(2), request(0.01))]

    started = time.monotonic()
    handed_off = run(pipeline, loop, Sender(), work)
    waited_s = time.monotonic() - started

    assert handed_off == 1
    assert 0.15 <= waited_s < 0.7, "run() waits for the handoff, not for the straggler"
    assert sorted(record.recorded()) == ["dlv_0", "dlv_2"]
    assert pipeline.in_flight == 1, "the straggler still holds its room"
    assert any(e["event"] == "delivery_handed_off" and e["attempts"] == 1 for e in logs)

    wait_for(lambda: "dlv_1" in record.recorded())
    wait_for(lambda: pipeline.in_flight == 0)
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]


def test_a_ready_outcome_is_recorded_without_being_sent(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, after = RecordMany(), AfterRecord()
    pipeline = make_pipeline(record, after)
    send = Sender()
    unavailable = ready()

    assert run(pipeline, loop, send, [(claim(0), unavailable), (claim(1), request(0.01))]) == 0

    assert len(send.sent) == 1, "only the request went out"
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1"]
    recorded = {c.delivery.id: o for group in record.groups for c, o in group}
    assert recorded["dlv_0"] is unavailable
    assert [(i, d.action) for i, o, d in after.calls if o is unavailable] == [("dlv_0", "retry")]


def test_only_ready_outcomes_need_no_event_loop_work(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record)
    send = Sender()

    assert run(pipeline, loop, send, [(claim(n), ready()) for n in range(3)]) == 0

    assert send.sent == []
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert pipeline.in_flight == 0


# --- Recording failures -----------------------------------------------------------------


def test_a_database_that_stays_down_makes_run_raise_recording_failed(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    logs: list[dict[str, Any]],
) -> None:
    record = RecordMany(fail_with=peewee.OperationalError("server closed the connection"))
    after = AfterRecord()
    pipeline = make_pipeline(record, after)
    pipeline.recorder.backoff_s = (0.001, 0.001, 0.001)
    work = [(claim(0), request(0.01)), (claim(1), ready())]

    with pytest.raises(RecordingFailed, match="2 attempt"):
        run(pipeline, loop, Sender(), work)

    assert pipeline.in_flight == 0, "failed attempts give their room back"
    assert record.groups == [] and after.calls == []
    assert record.calls >= 4, "one try, then one per backoff step"
    assert record.calls % 4 == 0, "every group is tried exactly 1 + len(backoff_s) times"
    assert any(e["event"] == "attempts_not_recorded" for e in logs)


def test_a_bug_in_record_is_not_retried_and_fails_the_batch(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
) -> None:
    record = RecordMany(fail_with=ValueError("not a database problem"))
    # A hand-off long enough that a loaded machine records first (CI handed off at 2 s).
    pipeline = make_pipeline(record, handoff_s=30.0)

    with pytest.raises(RecordingFailed):
        run(pipeline, loop, Sender(), [(claim(0), request(0.01))])

    assert record.calls == 1
    assert pipeline.in_flight == 0


def test_a_send_that_raises_fails_the_batch_and_frees_its_room(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record)

    async def broken(req: Any) -> Outcome:
        raise ConnectionError("send() is not supposed to raise")

    pipeline.reserve(1)
    with pytest.raises(RecordingFailed, match="1 attempt"):
        pipeline.run(loop, broken, [(claim(0), request())])

    assert record.calls == 0
    assert pipeline.in_flight == 0


def test_reserve_waits_until_attempts_in_flight_are_recorded(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record, max_in_flight=2)
    work = [(claim(0), request(0.3)), (claim(1), request(0.3))]
    pipeline.reserve(2)
    runner, ran = in_thread(lambda: pipeline.run(loop, Sender(), work))

    waiter, done = in_thread(lambda: pipeline.reserve(1))

    assert not done.wait(0.1)
    assert done.wait(WAIT_S), "the recorded attempts made room"
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1"]
    assert ran.wait(WAIT_S)
    runner.join(WAIT_S)
    waiter.join(WAIT_S)
    assert pipeline.in_flight == 1


def test_a_batch_larger_than_max_in_flight_proceeds_when_the_pipeline_is_empty(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record, max_in_flight=2)
    work = [(claim(n), request(0.01)) for n in range(5)]

    thread, reserved = in_thread(lambda: pipeline.reserve(5))
    assert reserved.wait(WAIT_S), "an empty pipeline takes any batch"
    thread.join(WAIT_S)
    assert pipeline.in_flight == 5

    assert pipeline.run(loop, Sender(), work) == 0
    assert sorted(record.recorded()) == [f"dlv_{n}" for n in range(5)]
    assert pipeline.in_flight == 0


# --- Drain ------------------------------------------------------------------------------


def test_drain_waits_for_the_attempts_in_flight_and_stops_the_recorder(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record, handoff_s=0.05)
    assert run(pipeline, loop, Sender(), [(claim(0), request(0.4))]) == 1
    assert record.recorded() == []

    left = pipeline.drain(WAIT_S)

    assert left == 0
    assert record.recorded() == ["dlv_0"]
    assert pipeline.in_flight == 0
    recorder = pipeline.recorder.thread
    assert recorder is not None and not recorder.is_alive()


def test_drain_answers_how_many_were_left_when_the_time_runs_out(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    logs: list[dict[str, Any]],
) -> None:
    record = RecordMany()
    # A handoff long beside the quick answer's 10 ms, so a loaded machine still records it.
    pipeline = make_pipeline(record, handoff_s=1.0)
    work = [(claim(0), request(0.01)), (claim(1), request(30)), (claim(2), request(30))]
    assert run(pipeline, loop, Sender(), work) == 2

    started = time.monotonic()
    left = pipeline.drain(0.1)

    assert left == 2
    assert time.monotonic() - started < 1.5, "drain is bounded by its timeout"
    assert record.recorded() == ["dlv_0"]
    assert any(e["event"] == "attempts_left_in_flight" and e["attempts"] == 2 for e in logs)


def test_drain_of_an_idle_pipeline_returns_zero_at_once(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()

    started = time.monotonic()
    assert pipeline.drain(WAIT_S) == 0
    assert time.monotonic() - started < 0.5


# --- after_record -----------------------------------------------------------------------


def test_after_record_is_called_once_per_recorded_attempt(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    after = AfterRecord()
    pipeline = make_pipeline(RecordMany(), after)
    work = [(claim(0), request(0.01, 200)), (claim(1), request(0.02, 500)), (claim(2), ready())]

    assert run(pipeline, loop, Sender(), work) == 0

    assert sorted(i for i, _o, _d in after.calls) == ["dlv_0", "dlv_1", "dlv_2"]
    by_id = {i: (o, d) for i, o, d in after.calls}
    assert by_id["dlv_0"][0].status_code == 200 and by_id["dlv_0"][1] == Decision("succeed")
    assert by_id["dlv_1"][0].status_code == 500
    assert by_id["dlv_1"][1] == Decision("retry", delay_s=5.0)
    assert by_id["dlv_2"][0].error_class == "secret_unavailable"


def test_payload_bytes_in_flight_are_bounded_even_for_handed_off_attempts(
    loop: asyncio.AbstractEventLoop,
) -> None:
    record = RecordMany()
    pipeline = Pipeline(
        record=record,
        after_record=AfterRecord(),
        connection=contextlib.nullcontext,
        handoff_s=0.05,
        max_in_flight=100,
        max_in_flight_bytes=100,
    )
    try:
        slow = [(heavy(1, 80), request(0.4))]
        assert run(pipeline, loop, Sender(), slow) == 1, "handed off, still holding its bytes"
        assert pipeline.in_flight_bytes == 80

        second = [(heavy(2, 50), request(0.01))]
        thread, finished = in_thread(lambda: run(pipeline, loop, Sender(), second))

        assert not finished.wait(0.2), "80 + 50 bytes do not fit in 100: it waits"
        assert finished.wait(WAIT_S), "it goes once the slow attempt is recorded"
        thread.join(WAIT_S)
        assert record.recorded() == ["dlv_1", "dlv_2"]
        assert pipeline.in_flight_bytes == 0
    finally:
        pipeline.drain(WAIT_S)


def test_a_batch_heavier_than_the_bound_goes_alone(loop: asyncio.AbstractEventLoop) -> None:
    pipeline = Pipeline(
        record=RecordMany(),
        after_record=AfterRecord(),
        connection=contextlib.nullcontext,
        handoff_s=WAIT_S,
        max_in_flight=100,
        max_in_flight_bytes=10,
    )
    try:
        work = [(heavy(n, 40), request(0.01)) for n in range(3)]
        assert weigh(work) == 120
        assert run(pipeline, loop, Sender(), work) == 0
        assert pipeline.in_flight_bytes == 0
    finally:
        pipeline.drain(WAIT_S)


# --- Sent before the deliveries are committed ----------------------------------------------


def test_a_held_batch_is_sent_at_once_and_recorded_only_once_released(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, send = RecordMany(), Sender()
    pipeline = make_pipeline(record)
    work = [(claim(0), request(0.0)), (claim(1), request(0.0)), (claim(2), ready())]

    batch = pipeline.start_held(loop, send, work)

    assert batch is not None and pipeline.in_flight == 3
    wait_for(lambda: len(send.sent) == 2)
    wait_for(lambda: len(batch.parked) == 3)  # answered, and the ready outcome: all parked
    pipeline.recorder.flush(WAIT_S)
    assert record.recorded() == []  # the deliveries might not exist yet
    pipeline.release_held(batch)
    assert pipeline.wait(batch) == 0
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert pipeline.in_flight == 0


def test_an_answer_after_the_release_goes_straight_to_the_recorder(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = RecordMany()
    pipeline = make_pipeline(record)
    batch = pipeline.start_held(loop, Sender(), [(claim(0), request(0.2))])
    assert batch is not None

    pipeline.release_held(batch)  # committed before the endpoint answered

    assert pipeline.wait(batch) == 0
    assert record.recorded() == ["dlv_0"]
    assert batch.parked == []


def test_a_dropped_batch_records_nothing_and_frees_its_room_as_answers_arrive(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, send = RecordMany(), Sender()
    pipeline = make_pipeline(record)
    work = [(claim(0), request(0.0)), (claim(1), request(0.3)), (claim(2), ready())]
    batch = pipeline.start_held(loop, send, work)
    assert batch is not None
    wait_for(lambda: len(batch.parked) == 2)

    pipeline.drop_held(batch)  # the transaction failed: these deliveries do not exist

    assert pipeline.in_flight == 1  # the slow one is still out
    wait_for(lambda: pipeline.in_flight == 0)  # and its late answer is dropped too
    assert batch.done.is_set()
    pipeline.recorder.flush(WAIT_S)
    assert record.recorded() == []
    assert len(send.sent) == 2


def test_without_room_start_held_takes_none_and_sends_nothing(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    pipeline = make_pipeline(max_in_flight=2)
    send = Sender()
    pipeline.reserve(1)

    assert pipeline.start_held(loop, send, [(claim(n), request()) for n in range(2)]) is None

    assert pipeline.in_flight == 1
    settle(loop)
    assert send.sent == []
    assert pipeline.start_held(loop, send, []) is None
