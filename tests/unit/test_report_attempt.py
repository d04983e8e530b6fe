"""`actors.outcomes.report_attempt`: what the breaker and the metrics hear of each attempt."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import REGISTRY

from actors import metrics
from actors.messages import OutcomeRecord
from actors.outcomes import report_attempt
from engine.db.models import Delivery, Endpoint, Event
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision

NOW = dt.datetime(2026, 12, 2, 12, 0, 0)


class Reporter:
    """Keeps what would go to the supervisor (and so to the endpoint's breaker)."""

    def __init__(self) -> None:
        self.reported: list[OutcomeRecord] = []

    def report(self, record: OutcomeRecord) -> None:
        self.reported.append(record)


def claimed(*, test: bool) -> Claim:
    event = Event(id="evt_1", tenant_id="ten_1", event_type="a.b", created_at=NOW, test=test)
    delivery = Delivery(id="dlv_1", endpoint_id="ep_1", event_id="evt_1", attempts=1, test=test)
    return Claim(delivery, Endpoint(id="ep_1"), event)


def sample(name: str, labels: tuple[str, str]) -> float:
    result, status_class = labels
    found = REGISTRY.get_sample_value(name, {"result": result, "status_class": status_class})
    return found or 0.0


@pytest.mark.parametrize("status", [200, 500])
def test_a_test_attempt_reaches_neither_the_breaker_nor_the_metrics_of_real_traffic(
    status: int,
) -> None:
    reporter = Reporter()
    outcome = Outcome(started_at=NOW, duration_ms=3.0, status_code=status)
    result = metrics.attempt_labels(outcome)
    real = sample("hookline_attempts_total", result)
    test = sample("hookline_test_attempts_total", result)

    report_attempt(reporter, claimed(test=True), outcome, Decision("succeed"))  # type: ignore[arg-type]

    assert reporter.reported == []
    assert sample("hookline_attempts_total", result) == real
    assert sample("hookline_test_attempts_total", result) == test + 1


def test_a_real_attempt_reaches_the_breaker_and_the_metrics() -> None:
    reporter = Reporter()
    outcome = Outcome(started_at=NOW, duration_ms=3.0, status_code=503, error_class="http_status")
    before = sample("hookline_attempts_total", ("http_status", "5xx"))

    report_attempt(reporter, claimed(test=False), outcome, Decision("retry", 5.0))  # type: ignore[arg-type]

    assert [(r.endpoint_id, r.success) for r in reporter.reported] == [("ep_1", False)]
    assert sample("hookline_attempts_total", ("http_status", "5xx")) == before + 1


@pytest.mark.parametrize(
    ("status", "error_class", "labels"),
    [
        (200, None, ("success", "2xx")),
        (503, "http_status", ("http_status", "5xx")),
        (302, "http_status", ("http_status", "3xx")),
        (None, "timeout", ("timeout", "none")),
        (None, None, ("connection", "none")),
    ],
)
def test_an_attempts_labels_name_its_failure_as_the_api_and_the_logs_do(
    status: int | None, error_class: str | None, labels: tuple[str, str]
) -> None:
    outcome = Outcome(NOW, 3.0, status_code=status, error_class=error_class)

    assert metrics.attempt_labels(outcome) == labels
