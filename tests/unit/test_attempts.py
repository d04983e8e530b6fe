"""The attempt pipeline: sends on a real event loop, records in groups on its recorder thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import peewee
import pytest
import structlog

from actors import pipeline as attempts
from actors.pipeline import Pipeline, RecordingFailed
from engine.db.models import utcnow
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision

WAIT_S = 2.0  # the longest any test waits for something that should happen


def claim(n: int) -> Claim:
    """A stand-in claim: just the attributes the pipeline and its callbacks read."""
    delivery = SimpleNamespace(id=f"dlv_{n}", attempts=1)
    return Claim(delivery, SimpleNamespace(id="ep_1"), SimpleNamespace(id=f"evt_{n}"))  # type: ignore[arg-type]


def request(delay_s: float = 0.01, status: int = 200) -> Any:
    """What the fake `send` is handed: how long to take and what to answer."""
    return SimpleNamespace(delay_s=delay_s, status=status)


def ready(error_class: str = "secret_unavailable") -> Outcome:
    return Outcome(utcnow(), 0.0, error_class=error_class, error_detail="no key")


def ids(group: Sequence[tuple[Claim, Outcome]]) -> list[str]:
    return [c.delivery.id for c, _o in group]


def wait_for(probe: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Poll until `probe` is truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s")
        time.sleep(0.005)
    return result


class Sender:
    """A fake `DeliveryClient.send`: sleeps as told, then answers the status it was told."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def __call__(self, req: Any) -> Outcome:
        self.sent.append(req)
        started = utcnow()
        await asyncio.sleep(req.delay_s)
        return Outcome(started, req.delay_s * 1000, status_code=req.status)


class Recorder:
    """A fake `record_many`: remembers each group and decides from the status code."""

    def __init__(self, fail_with: BaseException | None = None, failures: int = -1) -> None:
        self.groups: list[list[tuple[Claim, Outcome]]] = []
        self.calls = 0
        self.fail_with = fail_with
        self.failures = failures  # how many calls fail; -1: every one
        self.lock = threading.Lock()

    def __call__(self, pairs: Sequence[tuple[Claim, Outcome]]) -> list[Decision]:
        with self.lock:
            self.calls += 1
            if self.fail_with is not None and (self.failures < 0 or self.calls <= self.failures):
                raise self.fail_with
            self.groups.append(list(pairs))
        return [
            Decision("succeed") if o.success else Decision("retry", delay_s=5.0) for _c, o in pairs
        ]

    def recorded(self) -> list[str]:
        with self.lock:
            return [one for group in self.groups for one in ids(group)]


class AfterRecord:
    """A fake `after_record` that remembers its calls and raises for some deliveries."""

    def __init__(self, raise_for: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, Outcome, Decision]] = []
        self.raise_for = raise_for

    def __call__(self, claimed: Claim, outcome: Outcome, decision: Decision) -> None:
        self.calls.append((claimed.delivery.id, outcome, decision))
        if claimed.delivery.id in self.raise_for:
            raise RuntimeError("the metrics are broken")


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
            record=record or Recorder(),
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


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, threading.Event]:
    """Start `target` in a thread; the event is set once it returned."""
    done = threading.Event()

    def body() -> None:
        target()
        done.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, done


# --- Recording in groups ----------------------------------------------------------------


def test_answers_arriving_together_are_recorded_in_one_group(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "GATHER_S", 0.1)  # generous, so a busy machine cannot split it
    record = Recorder()
    pipeline = make_pipeline(record)
    work = [(claim(n), request(0.01)) for n in range(5)]

    assert run(pipeline, loop, Sender(), work) == 0

    assert len(record.groups) == 1
    assert sorted(ids(record.groups[0])) == [f"dlv_{n}" for n in range(5)]


def test_a_group_never_holds_more_than_max_group(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "GATHER_S", 0.1)
    monkeypatch.setattr(attempts, "MAX_GROUP", 2)
    record = Recorder()
    pipeline = make_pipeline(record)

    assert run(pipeline, loop, Sender(), [(claim(n), request(0.01)) for n in range(5)]) == 0

    assert sorted(record.recorded()) == [f"dlv_{n}" for n in range(5)]
    assert [len(group) for group in record.groups] == [2, 2, 1]


def test_when_all_answer_quickly_run_returns_zero_after_the_batch_is_recorded(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, after = Recorder(), AfterRecord()
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
    record = Recorder()
    pipeline = make_pipeline(record)

    assert pipeline.run(loop, Sender(), []) == 0
    assert record.calls == 0 and pipeline.in_flight == 0


def test_a_send_slower_than_the_handoff_is_handed_off_and_recorded_later(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    logs: list[dict[str, Any]],
) -> None:
    record = Recorder()
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
    record, after = Recorder(), AfterRecord()
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
    record = Recorder()
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
    monkeypatch: pytest.MonkeyPatch,
    logs: list[dict[str, Any]],
) -> None:
    monkeypatch.setattr(attempts, "RECORD_BACKOFF_S", (0.001, 0.001, 0.001))
    record = Recorder(fail_with=peewee.OperationalError("server closed the connection"))
    after = AfterRecord()
    pipeline = make_pipeline(record, after)
    work = [(claim(0), request(0.01)), (claim(1), ready())]

    with pytest.raises(RecordingFailed, match="2 attempt"):
        run(pipeline, loop, Sender(), work)

    assert pipeline.in_flight == 0, "failed attempts give their room back"
    assert record.groups == [] and after.calls == []
    assert record.calls >= 4, "one try, then one per backoff step"
    assert record.calls % 4 == 0, "every group is tried exactly 1 + len(RECORD_BACKOFF_S) times"
    assert any(e["event"] == "attempts_not_recorded" for e in logs)


def test_a_database_that_comes_back_is_retried_on_a_fresh_connection(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "GATHER_S", 0.1)
    monkeypatch.setattr(attempts, "RECORD_BACKOFF_S", (0.001, 0.001, 0.001))
    record = Recorder(fail_with=peewee.InterfaceError("connection already closed"), failures=2)
    opened: list[int] = []

    @contextlib.contextmanager
    def connection() -> Iterator[None]:
        opened.append(1)
        yield

    pipeline = make_pipeline(record, connection=connection)

    assert run(pipeline, loop, Sender(), [(claim(n), request(0.01)) for n in range(3)]) == 0

    assert record.calls == 3
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert len(opened) == 3, "each try holds its own connection"
    assert pipeline.in_flight == 0


def test_a_bug_in_record_is_not_retried_and_fails_the_batch(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "GATHER_S", 0.1)
    record = Recorder(fail_with=ValueError("not a database problem"))
    pipeline = make_pipeline(record)

    with pytest.raises(RecordingFailed):
        run(pipeline, loop, Sender(), [(claim(0), request(0.01))])

    assert record.calls == 1
    assert pipeline.in_flight == 0


def test_a_send_that_raises_fails_the_batch_and_frees_its_room(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = Recorder()
    pipeline = make_pipeline(record)

    async def broken(req: Any) -> Outcome:
        raise ConnectionError("send() is not supposed to raise")

    pipeline.reserve(1)
    with pytest.raises(RecordingFailed, match="1 attempt"):
        pipeline.run(loop, broken, [(claim(0), request())])

    assert record.calls == 0
    assert pipeline.in_flight == 0


# --- Room: reserve and release ----------------------------------------------------------


def test_reserve_waits_for_room_until_some_is_released(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(max_in_flight=2)
    pipeline.reserve(2)

    thread, done = in_thread(lambda: pipeline.reserve(1))

    assert not done.wait(0.1), "a full pipeline makes the next claim wait"
    pipeline.release(1)
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    assert pipeline.in_flight == 2


def test_reserve_waits_until_attempts_in_flight_are_recorded(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = Recorder()
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


def test_release_of_nothing_changes_nothing(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(max_in_flight=2)
    pipeline.reserve(1)

    pipeline.release(0)
    pipeline.release(-3)

    assert pipeline.in_flight == 1


def test_reserving_nothing_never_waits_even_over_capacity(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(max_in_flight=2)
    pipeline.reserve(5)  # an empty pipeline takes any batch: now over capacity

    thread, reserved = in_thread(lambda: pipeline.reserve(0))

    assert reserved.wait(WAIT_S), "a fan-out that claimed nothing must not wait for room"
    thread.join(WAIT_S)
    assert pipeline.in_flight == 5


def test_a_batch_larger_than_max_in_flight_proceeds_when_the_pipeline_is_empty(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = Recorder()
    pipeline = make_pipeline(record, max_in_flight=2)
    work = [(claim(n), request(0.01)) for n in range(5)]

    thread, reserved = in_thread(lambda: pipeline.reserve(5))
    assert reserved.wait(WAIT_S), "an empty pipeline takes any batch"
    thread.join(WAIT_S)
    assert pipeline.in_flight == 5

    assert pipeline.run(loop, Sender(), work) == 0
    assert sorted(record.recorded()) == [f"dlv_{n}" for n in range(5)]
    assert pipeline.in_flight == 0


def test_a_batch_larger_than_max_in_flight_waits_for_the_pipeline_to_empty(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(max_in_flight=2)
    pipeline.reserve(1)

    thread, reserved = in_thread(lambda: pipeline.reserve(5))

    assert not reserved.wait(0.1)
    pipeline.release(1)
    assert reserved.wait(WAIT_S)
    thread.join(WAIT_S)
    assert pipeline.in_flight == 5


# --- Drain ------------------------------------------------------------------------------


def test_drain_waits_for_the_attempts_in_flight_and_stops_the_recorder(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = Recorder()
    pipeline = make_pipeline(record, handoff_s=0.05)
    assert run(pipeline, loop, Sender(), [(claim(0), request(0.4))]) == 1
    assert record.recorded() == []

    left = pipeline.drain(WAIT_S)

    assert left == 0
    assert record.recorded() == ["dlv_0"]
    assert pipeline.in_flight == 0
    recorder = pipeline._recorder
    assert recorder is not None and not recorder.is_alive()


def test_drain_answers_how_many_were_left_when_the_time_runs_out(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    logs: list[dict[str, Any]],
) -> None:
    record = Recorder()
    pipeline = make_pipeline(record, handoff_s=0.05)
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
    pipeline = make_pipeline(Recorder(), after)
    work = [(claim(0), request(0.01, 200)), (claim(1), request(0.02, 500)), (claim(2), ready())]

    assert run(pipeline, loop, Sender(), work) == 0

    assert sorted(i for i, _o, _d in after.calls) == ["dlv_0", "dlv_1", "dlv_2"]
    by_id = {i: (o, d) for i, o, d in after.calls}
    assert by_id["dlv_0"][0].status_code == 200 and by_id["dlv_0"][1] == Decision("succeed")
    assert by_id["dlv_1"][0].status_code == 500
    assert by_id["dlv_1"][1] == Decision("retry", delay_s=5.0)
    assert by_id["dlv_2"][0].error_class == "secret_unavailable"


def test_an_exception_in_after_record_costs_no_other_attempt(
    make_pipeline: Callable[..., Pipeline],
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    logs: list[dict[str, Any]],
) -> None:
    monkeypatch.setattr(attempts, "GATHER_S", 0.1)  # all three in one group, the bad one first
    record = Recorder()
    after = AfterRecord(raise_for=frozenset({"dlv_0"}))
    pipeline = make_pipeline(record, after)
    work = [(claim(n), ready()) for n in range(3)]

    assert run(pipeline, loop, Sender(), work) == 0, "a recorded attempt is not a failed one"

    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert sorted(i for i, _o, _d in after.calls) == ["dlv_0", "dlv_1", "dlv_2"]
    assert pipeline.in_flight == 0
    failed = [e for e in logs if e["event"] == "after_record_failed"]
    assert [e["delivery_id"] for e in failed] == ["dlv_0"]


def heavy(n: int, payload_bytes: int) -> Claim:
    """A stand-in claim whose event carries a payload of `payload_bytes`."""
    delivery = SimpleNamespace(id=f"dlv_{n}", attempts=1)
    event = SimpleNamespace(id=f"evt_{n}", payload="x" * payload_bytes)
    return Claim(delivery, SimpleNamespace(id="ep_1"), event)  # type: ignore[arg-type]


def test_payload_bytes_in_flight_are_bounded_even_for_handed_off_attempts(
    loop: asyncio.AbstractEventLoop,
) -> None:
    record = Recorder()
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
        record=Recorder(),
        after_record=AfterRecord(),
        connection=contextlib.nullcontext,
        handoff_s=WAIT_S,
        max_in_flight=100,
        max_in_flight_bytes=10,
    )
    try:
        work = [(heavy(n, 40), request(0.01)) for n in range(3)]
        assert Pipeline.weigh(work) == 120
        assert run(pipeline, loop, Sender(), work) == 0
        assert pipeline.in_flight_bytes == 0
    finally:
        pipeline.drain(WAIT_S)


# --- Sent before the deliveries are committed ----------------------------------------------


def test_a_held_batch_is_sent_at_once_and_recorded_only_once_released(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record, send = Recorder(), Sender()
    pipeline = make_pipeline(record)
    work = [(claim(0), request(0.0)), (claim(1), request(0.0)), (claim(2), ready())]

    batch = pipeline.start_held(loop, send, work)

    assert batch is not None and pipeline.in_flight == 3
    wait_for(lambda: len(send.sent) == 2)
    wait_for(lambda: len(batch.parked) == 3)  # answered, and the ready outcome: all parked
    time.sleep(3 * attempts.GATHER_S)
    assert record.recorded() == []  # the deliveries might not exist yet
    pipeline.release_held(batch)
    assert pipeline.wait(batch) == 0
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert pipeline.in_flight == 0


def test_an_answer_after_the_release_goes_straight_to_the_recorder(
    make_pipeline: Callable[..., Pipeline], loop: asyncio.AbstractEventLoop
) -> None:
    record = Recorder()
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
    record, send = Recorder(), Sender()
    pipeline = make_pipeline(record)
    work = [(claim(0), request(0.0)), (claim(1), request(0.3)), (claim(2), ready())]
    batch = pipeline.start_held(loop, send, work)
    assert batch is not None
    wait_for(lambda: len(batch.parked) == 2)

    pipeline.drop_held(batch)  # the transaction failed: these deliveries do not exist

    assert pipeline.in_flight == 1  # the slow one is still out
    wait_for(lambda: pipeline.in_flight == 0)  # and its late answer is dropped too
    assert batch.done.is_set()
    time.sleep(3 * attempts.GATHER_S)
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
    time.sleep(0.05)
    assert send.sent == []
    assert pipeline.start_held(loop, send, []) is None
