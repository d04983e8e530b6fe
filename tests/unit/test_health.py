"""Breakers in the database: the window, parking in `claim`, the one probe, the tick, enable."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from actors.middleware import DeliveryPolicy
from actors.outcomes import OutcomeReporter
from engine.alerts import outbox as alert_records
from engine.breakers import parking
from engine.breakers import store as health
from engine.breakers import tick as supervision
from engine.breakers.state import Policy
from engine.db.models import AlertRecord, Delivery, Endpoint, EndpointHealth, utcnow
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.events.ingest import EventStore
from tests.factories import make_endpoint

POLICY = Policy(cooldown_s=30, max_cooldown_s=120, disable_after_s=1000, release_per_s=2)


@pytest.fixture
def endpoint(sqlite_db: Any) -> Endpoint:
    return make_endpoint()


@pytest.fixture
def publish(endpoint: Endpoint) -> Callable[[], str]:
    """Publish one event and fan it out; answer its delivery's id."""

    store = EventStore()

    def make() -> str:
        event, _ = store.ingest_event(
            endpoint.tenant_id, "order.paid", {}, None, fan_out_lease_s=30
        )
        [delivery_id] = fanout.fan_out(event.id)
        return delivery_id

    return make


def seen(endpoint: Endpoint, success: bool, delivery_id: str = "dlv_x", **kw: Any) -> Any:
    return health.Observation(
        endpoint.id, success, utcnow(), 200 if success else 500, delivery_id, **kw
    )


def fail(endpoint: Endpoint, count: int, now: dt.datetime | None = None) -> list[str]:
    return health.fold([seen(endpoint, False) for _ in range(count)], policy=POLICY, now=now)


def state_of(endpoint: Endpoint) -> EndpointHealth:
    return EndpointHealth.get_by_id(endpoint.id)


def kinds(endpoint: Endpoint) -> list[tuple[str, str]]:
    rows = (
        AlertRecord.select()
        .where(AlertRecord.endpoint_id == endpoint.id)
        .order_by(AlertRecord.created_at)
    )
    return [(row.kind, row.dedup) for row in rows]


def attempt(delivery_id: str, status: int) -> deliveries.Claim:
    claimed = deliveries.claim(delivery_id, lease_s=30)
    assert claimed is not None
    outcome = Outcome(started_at=utcnow(), duration_ms=1.0, status_code=status)
    policy = DeliveryPolicy.of([60] * 5, 86400, rand=lambda: 0.5)
    deliveries.record(claimed, outcome, decide=policy.decide)
    return claimed


def later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def test_failures_in_the_window_open_the_breaker_and_emit_one_alert(endpoint: Endpoint) -> None:
    fail(endpoint, 9)
    assert state_of(endpoint).state == "closed"

    emitted = fail(endpoint, 1)
    fail(endpoint, 5)

    assert len(emitted) == 1
    assert state_of(endpoint).state == "open"
    assert kinds(endpoint) == [("endpoint.failing", "t1")]
    facts = AlertRecord.get_by_id(emitted[0]).facts
    assert facts["failure_rate"] == 1.0 and facts["window_attempts"] == 10


def test_an_open_breaker_parks_deliveries_without_spending_attempts(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    retried = publish()
    attempt(retried, 500)
    Delivery.update(status="queued").where(Delivery.id == retried).execute()
    fresh = publish()
    fail(endpoint, 10)

    assert deliveries.claim(retried, lease_s=30) is None
    assert deliveries.claim(fresh, lease_s=30) is None

    rows = {row.id: row for row in Delivery.select()}
    assert (rows[retried].status, rows[retried].attempts) == ("parked", 1)
    assert (rows[fresh].status, rows[fresh].attempts) == ("parked", 0)
    assert health.view(endpoint, POLICY).parked == 2


def test_the_cool_down_half_opens_and_exactly_one_probe_goes_through(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    first, second = publish(), publish()
    fail(endpoint, 10)
    deliveries.claim(first, lease_s=30), deliveries.claim(second, lease_s=30)

    supervision.advance(POLICY, now=later(31), probe_timeout_s=60, batch=100)

    assert state_of(endpoint).state == "half_open"
    assert Delivery.get_by_id(first).status == "scheduled", "the oldest parked one is the probe"
    Delivery.update(status="queued").where(Delivery.id.in_([first, second])).execute()
    assert deliveries.claim(first, lease_s=30) is not None
    assert deliveries.claim(second, lease_s=30) is None
    assert state_of(endpoint).probe_delivery_id == first
    assert Delivery.get_by_id(second).status == "parked"


def test_a_failed_probe_reopens_with_a_doubled_cool_down_and_no_new_alert(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    probe = publish()
    fail(endpoint, 10)
    supervision.advance(POLICY, now=later(31), probe_timeout_s=60, batch=100)
    attempt(probe, 500)

    health.fold([seen(endpoint, False, probe)], policy=POLICY)

    row = state_of(endpoint)
    assert (row.state, row.cooldown_s) == ("open", 60)
    assert kinds(endpoint) == [("endpoint.failing", "t1")]


def test_a_successful_probe_closes_and_releases_the_parked_at_a_bounded_pace(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    fail(endpoint, 10)
    parked = [publish() for _ in range(15)]
    for delivery_id in parked:
        deliveries.claim(delivery_id, lease_s=30)
    supervision.advance(POLICY, now=later(31), probe_timeout_s=60, batch=100)
    Delivery.update(status="queued").where(Delivery.id == parked[0]).execute()
    attempt(parked[0], 200)

    emitted = health.fold([seen(endpoint, True, parked[0])], policy=POLICY)
    now = utcnow()
    released = supervision.release(POLICY, now=now, batch=100)

    assert state_of(endpoint).state == "closed"
    assert [AlertRecord.get_by_id(a).kind for a in emitted] == ["endpoint.recovered"]
    assert released == 10, "2 a second over the 5-second horizon"
    times = sorted(
        row.next_attempt_at for row in Delivery.select().where(Delivery.status == "scheduled")
    )
    assert times[0] >= now and times[-1] - times[0] == dt.timedelta(seconds=4)
    assert supervision.release(POLICY, now=now + dt.timedelta(seconds=3), batch=100) == 4
    assert supervision.release(POLICY, now=now + dt.timedelta(seconds=9), batch=100) == 0
    assert not state_of(endpoint).releasing


def test_an_outage_warns_at_50_70_and_90_percent_then_disables(endpoint: Endpoint) -> None:
    start = utcnow()
    fail(endpoint, 10, now=start)
    moments = [500, 700, 900, 1000]
    for seconds in moments:
        row = state_of(endpoint)
        row.next_probe_at = start + dt.timedelta(days=1)  # keep the probes out of the way
        row.save()
        supervision.advance(
            POLICY, now=start + dt.timedelta(seconds=seconds), probe_timeout_s=60, batch=100
        )
        supervision.advance(
            POLICY, now=start + dt.timedelta(seconds=seconds + 1), probe_timeout_s=60, batch=100
        )

    assert kinds(endpoint) == [
        ("endpoint.failing", "t1"),
        ("endpoint.failing", "o1:w50"),
        ("endpoint.failing", "o1:w70"),
        ("endpoint.failing", "o1:w90"),
        ("endpoint.disabled", "o1"),
    ]
    refreshed = Endpoint.get_by_id(endpoint.id)
    assert refreshed.status == "disabled" and "circuit breaker open" in refreshed.disabled_reason
    assert state_of(endpoint).due_at is None


def test_an_outage_warning_records_its_percentage_and_logs_its_event(
    endpoint: Endpoint,
) -> None:
    start = utcnow()
    fail(endpoint, 10, now=start)
    row = state_of(endpoint)
    row.next_probe_at = start + dt.timedelta(days=1)
    row.save()

    with structlog.testing.capture_logs() as logged:
        supervision.advance(
            POLICY, now=start + dt.timedelta(seconds=500), probe_timeout_s=60, batch=100
        )

    warning = AlertRecord.get(AlertRecord.dedup == "o1:w50")
    assert warning.facts["warning_pct"] == 50
    changed = [entry for entry in logged if entry["event"] == "breaker_changed"]
    assert [entry["events"] for entry in changed] == [["warning:50"]]


def test_a_disabled_endpoints_deliveries_park_and_enable_with_replay_releases_them(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    gone, waiting = publish(), publish()
    claimed = attempt(gone, 410)
    assert deliveries.claim(waiting, lease_s=30) is None
    assert Delivery.get_by_id(waiting).status == "parked"
    assert kinds(endpoint) == [("endpoint.disabled", f"gone:{claimed.delivery.id}")]

    row, replayed = parking.enable(endpoint.tenant_id, endpoint.id, replay=True)

    assert row.status == "active" and row.disabled_reason is None
    assert replayed == 2, "the parked one and the one quarantined by the 410"
    assert {d.status for d in Delivery.select()} == {"parked"}
    assert state_of(endpoint).releasing
    assert kinds(endpoint)[-1] == ("endpoint.recovered", "t1")
    assert supervision.release(POLICY, now=utcnow(), batch=100) == 2


def test_enable_without_replay_cancels_what_was_parked(
    endpoint: Endpoint, publish: Callable[[], str]
) -> None:
    gone, waiting = publish(), publish()
    attempt(gone, 410)
    deliveries.claim(waiting, lease_s=30)

    _, replayed = parking.enable(endpoint.tenant_id, endpoint.id, replay=False)

    assert replayed == 0
    assert Delivery.get_by_id(waiting).status == "cancelled"


def test_quarantines_are_digested_once_per_interval(endpoint: Endpoint) -> None:
    health.fold([seen(endpoint, False, quarantined=True) for _ in range(3)], policy=POLICY)
    now = utcnow()

    assert supervision.digest(POLICY, digest_s=300, now=now, batch=10) == []
    [first] = supervision.digest(POLICY, digest_s=300, now=now + dt.timedelta(seconds=11), batch=10)
    health.fold([seen(endpoint, False, quarantined=True)], policy=POLICY)
    soon = now + dt.timedelta(seconds=60)
    assert supervision.digest(POLICY, digest_s=300, now=soon, batch=10) == []
    [second] = supervision.digest(
        POLICY, digest_s=300, now=now + dt.timedelta(seconds=320), batch=10
    )

    assert AlertRecord.get_by_id(first).facts["quarantined"] == 3
    assert AlertRecord.get_by_id(second).facts["quarantined"] == 1


def test_alerts_are_published_once_and_counted_by_state(endpoint: Endpoint) -> None:
    fail(endpoint, 10)
    published: list[str] = []

    def confirm(ids: list[str]) -> int:
        published.extend(ids)
        return len(ids)

    assert alert_records.publish_pending(confirm, 10) == (1, 1)
    assert alert_records.publish_pending(confirm, 10) == (0, 0)
    assert len(published) == 1
    assert supervision.breaker_counts() == {"open": 1, "half_open": 0, "closed": 0}


def test_the_health_view_reports_the_window_and_the_breaker(endpoint: Endpoint) -> None:
    health.fold([seen(endpoint, True), *[seen(endpoint, False) for _ in range(3)]], policy=POLICY)

    view = health.view(endpoint, POLICY)

    assert (view.state, view.failure_rate, view.window_attempts) == ("closed", 0.75, 4)
    assert view.consecutive_failures == 3
    assert view.last_success_at is not None and view.last_failure_at is not None


def test_the_outcome_reporter_batches_and_never_waits_on_a_broken_broker() -> None:
    batches: list[int] = []
    broken = threading.Event()

    def send(batch: list[list[Any]]) -> None:
        if broken.is_set():
            raise ConnectionError("broker down")
        batches.append(len(batch))

    reporter = OutcomeReporter(send, max_batch=5, interval_s=0.05, capacity=15)
    for n in range(12):
        reporter.report([n])
    deadline = time.monotonic() + 5
    while sum(batches) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(batches) == 12 and max(batches) <= 5

    broken.set()
    started = time.monotonic()
    for n in range(20):
        reporter.report([n])
    assert time.monotonic() - started < 0.5
    time.sleep(0.2)
    assert (reporter.pending(), reporter.dropped) == (15, 5), "the oldest are dropped"
    broken.clear()
    reporter.stop()
    assert sum(batches) == 27 and reporter.pending() == 0
