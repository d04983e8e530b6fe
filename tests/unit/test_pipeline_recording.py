"""The pipeline's recorder: answers recorded in groups, one transaction each, on its thread."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import peewee
import pytest
import structlog

from actors.pipeline import Batch, Recorder
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision
from tests.unit.pipeline_fakes import WAIT_S, AfterRecord, RecordMany, claim, ids, ready


class Finished:
    """A fake `finished`: which attempts ended, and whether they were recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, items: list[tuple[Claim, Batch]], ok: bool) -> None:
        self.calls.append(([c.delivery.id for c, _batch in items], ok))


def recorder(
    record: Any = None,
    after_record: Any = None,
    *,
    finished: Finished | None = None,
    connection: Any = contextlib.nullcontext,
    **options: Any,
) -> Recorder:
    return Recorder(
        record=record or RecordMany(),
        after_record=after_record or AfterRecord(),
        connection=connection,
        finished=finished or Finished(),
        **options,
    )


def answer(made: Recorder, n: int) -> None:
    made.put(claim(n), ready(), Batch(1))


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    """Every log event of the test, captured instead of rendered."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def test_answers_queued_together_are_recorded_in_one_group() -> None:
    record, finished = RecordMany(), Finished()
    made = recorder(record, finished=finished)
    for n in range(5):
        answer(made, n)

    made.flush()

    assert [sorted(ids(group)) for group in record.groups] == [[f"dlv_{n}" for n in range(5)]]
    assert finished.calls == [([f"dlv_{n}" for n in range(5)], True)]


def test_the_thread_records_what_arrived_during_its_gather_window_in_one_group() -> None:
    record = RecordMany()
    made = recorder(record)
    for n in range(5):
        answer(made, n)

    made.start()
    made.flush(WAIT_S)

    assert [len(group) for group in record.groups] == [5]
    made.stop(WAIT_S)


def test_a_group_never_holds_more_than_max_group() -> None:
    record = RecordMany()
    made = recorder(record, max_group=2)
    for n in range(5):
        answer(made, n)

    made.flush()

    assert sorted(record.recorded()) == [f"dlv_{n}" for n in range(5)]
    assert [len(group) for group in record.groups] == [2, 2, 1]


def test_flush_waits_until_the_thread_has_recorded_what_it_already_took() -> None:
    class SlowRecord(RecordMany):
        def __call__(self, pairs: Sequence[tuple[Claim, Outcome]]) -> list[Decision]:
            time.sleep(0.2)
            return super().__call__(pairs)

    record = SlowRecord()
    made = recorder(record)
    made.start()
    answer(made, 0)

    made.flush(WAIT_S)

    assert record.recorded() == ["dlv_0"]
    made.stop(WAIT_S)


def test_a_database_that_comes_back_is_retried_on_a_fresh_connection() -> None:
    record = RecordMany(fail_with=peewee.InterfaceError("connection already closed"), failures=2)
    finished = Finished()
    opened: list[int] = []

    @contextlib.contextmanager
    def connection() -> Iterator[None]:
        opened.append(1)
        yield

    made = recorder(
        record, finished=finished, connection=connection, backoff_s=(0.001, 0.001, 0.001)
    )
    for n in range(3):
        answer(made, n)

    made.flush()

    assert record.calls == 3
    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert len(opened) == 3, "each try holds its own connection"
    assert finished.calls == [(["dlv_0", "dlv_1", "dlv_2"], True)]


def test_a_bug_in_record_is_not_retried_and_ends_the_group_unrecorded(
    logs: list[dict[str, Any]],
) -> None:
    record, finished = RecordMany(fail_with=ValueError("not a database problem")), Finished()
    made = recorder(record, finished=finished)
    answer(made, 0)

    made.flush()

    assert record.calls == 1
    assert finished.calls == [(["dlv_0"], False)]
    assert any(e["event"] == "attempts_not_recorded" for e in logs)


def test_an_exception_in_after_record_costs_no_other_attempt(
    logs: list[dict[str, Any]],
) -> None:
    record, finished = RecordMany(), Finished()
    after = AfterRecord(raise_for=frozenset({"dlv_0"}))
    made = recorder(record, after, finished=finished)
    for n in range(3):  # one group, the bad one first
        answer(made, n)

    made.flush()

    assert sorted(record.recorded()) == ["dlv_0", "dlv_1", "dlv_2"]
    assert sorted(i for i, _o, _d in after.calls) == ["dlv_0", "dlv_1", "dlv_2"]
    assert finished.calls == [(["dlv_0", "dlv_1", "dlv_2"], True)], "recorded is not failed"
    failed = [e for e in logs if e["event"] == "after_record_failed"]
    assert [e["delivery_id"] for e in failed] == ["dlv_0"]


def test_stop_records_what_was_queued_and_no_thread_starts_after_it() -> None:
    record = RecordMany()
    made = recorder(record)
    made.start()
    answer(made, 0)
    answer(made, 1)

    made.stop(WAIT_S)

    assert sorted(record.recorded()) == ["dlv_0", "dlv_1"]
    thread = made.thread
    assert thread is not None and not thread.is_alive()
    made.start()
    assert made.thread is thread, "a stopped recorder starts no thread"
