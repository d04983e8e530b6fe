"""Flow control on the real processes: two worker processes, one scheduler, real sockets.

Throttle (rate and in-flight limits held across both workers, measured at the
receiver), FIFO order through a worker's kill -9, adaptive concurrency against a
receiver that refuses above its capacity, and a `Retry-After` that pauses the
whole endpoint.
"""

from __future__ import annotations

import datetime as dt
import itertools
import signal
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.db.models import utcnow
from engine.deliveries import flow
from tests.integration.conftest import Api, Processes, running_stack
from tests.integration.test_delivery import create_endpoint
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def flow_stack(
    pg_migrated: str, amqp_url: str, tmp_path_factory: Any
) -> Iterator[tuple[Api, Processes]]:
    """API, scheduler, and a worker of two processes: limits must hold across processes."""
    with running_stack(
        pg_migrated,
        amqp_url,
        tmp_path_factory.mktemp("flow-logs"),
        HOOKLINE_WORKER_PROCESSES="2",
        HOOKLINE_DB_MAX_CONNECTIONS="5",
        # A worker killed mid-attempt gives its claim back after 5 + 2 s, not 5 + 30.
        HOOKLINE_LEASE_GRACE_S="2",
    ) as running:
        yield running


def send_batch(api: Api, key: str, count: int, event_type: str = "order.paid") -> list[str]:
    """Accept `count` events, in batches of 100, in order; answer their ids in that order."""
    ids: list[str] = []
    for start in range(0, count, 100):
        events = [
            {"event_type": event_type, "payload": {"n": n}}
            for n in range(start, min(count, start + 100))
        ]
        status, body = api.call("POST", "/v1/events/batch", {"events": events}, key=key)
        assert status == 207, body
        assert {r["status"] for r in body["results"]} == {202}, body
        ids.extend(result["id"] for result in body["results"])
    return ids


def health(api: Api, key: str, endpoint_id: str) -> dict[str, Any]:
    status, body = api.call("GET", f"/v1/endpoints/{endpoint_id}/health", key=key)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of `times` that fall in any window of `window_s` (closed at its start)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_rate_limit_holds_at_the_receiver_across_two_worker_processes(
    flow_stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = flow_stack
    key = api.tenant()
    endpoint = create_endpoint(api, key, receiver.url("/rate"), rate_limit_per_s=20)
    assert endpoint["rate_limit_per_s"] == 20
    started = time.monotonic()
    send_batch(api, key, 150)

    waiting = [health(api, key, endpoint["id"])["flow"]["throttled"]]
    while len(receiver.received("/rate")) < 50:
        waiting.append(health(api, key, endpoint["id"])["flow"]["throttled"])
        time.sleep(0.1)
    got = receiver.wait_for("/rate", 150, timeout_s=60)
    elapsed = time.monotonic() - started

    arrivals = [r.at for r in got]
    assert most_in_any_window(arrivals, 1.0) <= 22, "at most the rate + 10 % in any second"
    assert elapsed >= (150 - 2) / 20, "150 requests at 20/s take at least 7.4 s"
    # A loose floor (a starved CI box sends fewer): the limit is a ceiling, not a stall.
    # Counted from the first arrival: a box at half speed took 40 s to ingest and start.
    # A slot a starved worker reaches late is given back and sent later (31 s and 45 s seen).
    sending = max(arrivals) - min(arrivals)
    assert sending <= 60, f"the limit is used, not undershot: {sending:.1f}s for 150 at 20/s"
    assert max(waiting) >= 50, f"the rest waited in PostgreSQL as throttled: {waiting}"
    assert len({r.headers["webhook-id"] for r in got}) == 150


def test_max_in_flight_holds_at_the_receiver_across_two_worker_processes(
    flow_stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = flow_stack
    key = api.tenant()
    receiver.script("/narrow", delay_s=0.2)
    endpoint = create_endpoint(api, key, receiver.url("/narrow"), max_in_flight=3)
    send_batch(api, key, 60)

    got = receiver.wait_for("/narrow", 60, timeout_s=40)

    assert receiver.peak["/narrow"] == 3, "never more than 3 at once, and the room is used"
    assert len({r.headers["webhook-id"] for r in got}) == 60
    status, body = api.call("GET", f"/v1/deliveries?endpoint_id={endpoint['id']}", key=key)
    assert status == 200, body


def test_a_fifo_endpoint_receives_in_event_order_through_a_worker_kill(
    flow_stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, processes = flow_stack
    key = api.tenant()
    receiver.script("/fifo", delay_s=0.005)
    endpoint = create_endpoint(api, key, receiver.url("/fifo"), ordering="fifo")
    assert endpoint["ordering"] == "fifo"
    # One at a time, each a claim, a send and a recording: a starved CI box sends some 7 a
    # second, so 300 (killed at the 100th) prove the order without taking minutes.
    ids = send_batch(api, key, 300)

    receiver.wait_for("/fifo", 100, timeout_s=90)
    processes.stop("worker", signal.SIGKILL)
    processes.start("worker", name="worker")
    receiver.wait_for("/fifo", 300, timeout_s=240)
    deadline = time.monotonic() + 30
    while len({r.headers["webhook-id"] for r in receiver.received("/fifo")}) < 300:
        assert time.monotonic() < deadline, "every event arrives"
        time.sleep(0.1)
    got = receiver.received("/fifo")

    order = {event_id: n for n, event_id in enumerate(ids)}
    seen = [order[r.headers["webhook-id"]] for r in got]
    expected_next = 0
    repeats = 0
    for n in seen:
        if n == expected_next:
            expected_next += 1
        else:  # only the head may come again: the one last sent for the first time
            assert n == expected_next - 1, f"out of order: {n} after {expected_next - 1}"
            repeats += 1
    assert expected_next == 300
    assert repeats <= 2, f"at-least-once repeats of the head only: {repeats}"
    assert all(b.at >= a.done_at for a, b in itertools.pairwise(got)), "one at a time"


def test_a_retry_after_pauses_the_whole_endpoint(
    flow_stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = flow_stack
    key = api.tenant()
    receiver.script("/busy", 429, default=200)
    receiver.behaviours["/busy"].headers = {"Retry-After": "3"}
    endpoint = create_endpoint(api, key, receiver.url("/busy"), retry_schedule=[1, 1, 1])
    send_batch(api, key, 1)
    [refused] = receiver.wait_for("/busy", 1)
    flow = {}
    deadline = time.monotonic() + 5
    while not flow.get("paused_until"):
        assert time.monotonic() < deadline, "the pause shows in the endpoint's health"
        flow = health(api, key, endpoint["id"])["flow"]
        time.sleep(0.05)
    assert flow["pause_reason"] == "Retry-After 3s on a 429"
    send_batch(api, key, 5)

    got = receiver.wait_for("/busy", 7, timeout_s=20)

    later = [r.at - refused.at for r in got[1:]]
    assert min(later) >= 2.7, f"nothing reaches the endpoint during its pause: {later}"


def test_adaptive_concurrency_settles_near_what_the_receiver_takes(
    flow_stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = flow_stack
    key = api.tenant()
    capacity = 8
    receiver.limit("/adaptive", capacity, delay_s=0.1)
    endpoint = create_endpoint(
        api, key, receiver.url("/adaptive"), retry_schedule=[1, 1, 1, 1, 1, 1, 1, 1]
    )
    send_batch(api, key, 3000)
    try:
        time.sleep(30)
        settled_at = time.time()
        refused_before = receiver.refused["/adaptive"]
        limits = []
        for _ in range(10):
            limits.append(health(api, key, endpoint["id"])["flow"])
            time.sleep(1)
        window = [r for r in receiver.received("/adaptive") if r.at >= settled_at]
        refused = receiver.refused["/adaptive"] - refused_before
    finally:
        api.call("DELETE", f"/v1/endpoints/{endpoint['id']}", key=key)

    assert len(window) > 100, f"it keeps delivering: {len(window)} in 10 s"
    assert refused / len(window) < 0.05, f"429s: {refused} of {len(window)}"
    # Hookline counts an attempt in flight from its claim to its recording, longer than the
    # receiver holds it, and longer still on a loaded machine (two CI runs saw the limit climb
    # 5, 7, 8, 9, 9, 10, ... past 1.5 N with no more 429s). AIMD is a sawtooth: a halving from
    # just under N lands under N/2 (a CI run sampled 4, 6, 8, 5, 7, 9, ... and one sample out
    # of N/2..2N). So "about N" is the median within N/2..2N, and no sample collapsed to
    # one or ran away past 3 N. The 429 rate above is what the receiver feels.
    learnt = [flow["concurrency_limit"] for flow in limits]
    assert all(n is not None for n in learnt), f"a limit is learnt throughout: {learnt}"
    assert capacity // 2 <= statistics.median(learnt) <= capacity * 2, f"samples: {learnt}"
    assert all(2 <= n <= capacity * 3 for n in learnt), f"samples: {learnt}"
    assert all(flow["concurrency_reason"] for flow in limits), limits
    assert receiver.peak["/adaptive"] > capacity, "it did find the receiver's capacity"


def test_the_databases_clock_is_read_as_the_tables_store_time(pg: Any) -> None:
    """Slots are on PostgreSQL's clock; on one machine it agrees with this host's."""
    read = flow.database_now()

    assert read.tzinfo is None, "naive UTC, as every table stores"
    assert abs(read - utcnow()) < dt.timedelta(seconds=1)
    assert abs(flow.host_ahead()) < dt.timedelta(milliseconds=50)
