"""The pipeline's admission: attempts and payload bytes in flight, and who waits for room."""

from __future__ import annotations

from actors.pipeline import Admission, weigh
from engine.deliveries.client import Request
from tests.unit.pipeline_fakes import WAIT_S, heavy, in_thread


def test_reserve_waits_for_room_until_some_is_released() -> None:
    admission = Admission(max_in_flight=2)
    admission.reserve(2)

    thread, done = in_thread(lambda: admission.reserve(1))

    assert not done.wait(0.1), "a full pipeline makes the next claim wait"
    admission.release(1)
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    assert admission.in_flight == 2


def test_release_of_nothing_changes_nothing() -> None:
    admission = Admission(max_in_flight=2)
    admission.reserve(1)

    admission.release(0)
    admission.release(-3)

    assert admission.in_flight == 1


def test_reserving_nothing_never_waits_even_over_capacity() -> None:
    admission = Admission(max_in_flight=2)
    admission.reserve(5)  # an empty pipeline takes any batch: now over capacity

    thread, reserved = in_thread(lambda: admission.reserve(0))

    assert reserved.wait(WAIT_S), "a fan-out that claimed nothing must not wait for room"
    thread.join(WAIT_S)
    assert admission.in_flight == 5


def test_a_batch_larger_than_max_in_flight_waits_for_the_pipeline_to_empty() -> None:
    admission = Admission(max_in_flight=2)
    admission.reserve(1)

    thread, reserved = in_thread(lambda: admission.reserve(5))

    assert not reserved.wait(0.1)
    admission.release(1)
    assert reserved.wait(WAIT_S)
    thread.join(WAIT_S)
    assert admission.in_flight == 5


def test_take_now_takes_room_only_when_it_fits_and_never_waits() -> None:
    admission = Admission(max_in_flight=3, max_in_flight_bytes=100)
    admission.reserve(2)

    assert admission.take_now(2, 10) is False, "2 + 2 attempts do not fit in 3"
    assert (admission.in_flight, admission.in_flight_bytes) == (2, 0)
    assert admission.take_now(1, 10) is True
    assert (admission.in_flight, admission.in_flight_bytes) == (3, 10)


def test_bytes_wait_for_room_until_a_finished_batch_frees_them() -> None:
    admission = Admission(max_in_flight=100, max_in_flight_bytes=100)
    admission.hold_bytes(80)

    thread, held = in_thread(lambda: admission.hold_bytes(50))

    assert not held.wait(0.1), "80 + 50 bytes do not fit in 100"
    admission.reserve(1)
    admission.free(1, 80)
    assert held.wait(WAIT_S)
    thread.join(WAIT_S)
    assert (admission.in_flight, admission.in_flight_bytes) == (0, 50)


def test_without_a_byte_bound_nothing_is_weighed_or_held() -> None:
    admission = Admission(max_in_flight=100)

    admission.hold_bytes(10**9)

    assert admission.weighs is False and admission.in_flight_bytes == 0


def test_wait_empty_answers_how_many_are_still_in_flight_when_the_time_runs_out() -> None:
    admission = Admission(max_in_flight=10)
    admission.reserve(3)

    assert admission.wait_empty(0.05) == 3
    admission.free(3, 0)
    assert admission.wait_empty(WAIT_S) == 0


def test_an_event_shared_by_a_batch_is_weighed_once_with_its_stored_payload() -> None:
    body = Request(url="https://example.com/", headers={}, body=b"x" * 30)
    work = [(heavy(1, 40), body), (heavy(1, 40), body), (heavy(2, 5), body)]

    assert weigh(work) == (30 + 40) + (30 + 5)
