"""The `supervise` actor reads the typed outcome records a worker reports, and nothing else."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from actors import supervise
from actors.broker import Publisher
from actors.messages import OUTCOME_VERSION, OutcomeRecord
from actors.runtime import Runtime
from engine.breakers import store as health
from engine.breakers.state import Policy
from engine.db.models import Endpoint, utcnow
from engine.deliveries.client import Outcome
from engine.retry import Decision
from engine.settings import Settings


@pytest.fixture
def endpoint(create_endpoint: Callable[..., dict[str, Any]]) -> Endpoint:
    return Endpoint.get_by_id(create_endpoint(url="https://example.com/hook")["id"])


@pytest.fixture
def runtime(sqlite_settings: Settings, sqlite_db: Any) -> Runtime:
    return Runtime(sqlite_settings, sqlite_db, publisher=None)  # type: ignore[arg-type]


def failed(endpoint: Endpoint, n: int) -> OutcomeRecord:
    outcome = Outcome(utcnow() - dt.timedelta(seconds=n), 5.0, status_code=500)
    return OutcomeRecord.of(endpoint.id, f"dlv_{n}", outcome, Decision("retry", delay_s=5.0))


def window(endpoint: Endpoint, settings: Settings) -> int:
    return health.view(endpoint, Policy.from_settings(settings)).window_attempts


def test_a_batch_a_worker_reports_is_folded_by_the_supervisor(
    endpoint: Endpoint, runtime: Runtime
) -> None:
    sent: list[Any] = []
    broker = SimpleNamespace(get_actor=lambda kind: SimpleNamespace(send=sent.append))
    Publisher(broker, runtime.settings).report_outcomes([failed(endpoint, n) for n in range(3)])  # type: ignore[arg-type]

    [message] = json.loads(json.dumps(sent))  # as dramatiq carries it
    supervise.supervise(runtime, message)

    assert all(row["version"] == OUTCOME_VERSION for row in message)
    assert window(endpoint, runtime.settings) == 3


def test_records_it_cannot_read_are_refused_in_one_log_line_and_the_rest_folded(
    endpoint: Endpoint, runtime: Runtime, logs: list[dict[str, Any]]
) -> None:
    at_s = failed(endpoint, 0).at_s
    batch = [
        failed(endpoint, 1).to_json(),
        [endpoint.id, False, at_s, 500, "dlv_2"],  # version 0, from before an upgrade
        {**failed(endpoint, 3).to_json(), "version": OUTCOME_VERSION + 1},
        {"version": OUTCOME_VERSION},
    ]

    supervise.supervise(runtime, batch)  # returns: dramatiq acks the message

    assert window(endpoint, runtime.settings) == 2
    refused = [e for e in logs if e["event"] == "outcomes_refused"]
    assert len(refused) == 1
    assert refused[0]["refused"] == 2 and refused[0]["supervised"] == 2
    assert refused[0]["unknown_versions"] == [repr(OUTCOME_VERSION + 1)]
    assert refused[0]["malformed"] == 1
