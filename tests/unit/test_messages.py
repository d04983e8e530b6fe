"""Messages between processes: the outcome records a worker sends the supervisor."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from actors.messages import OUTCOME_VERSION, OutcomeRecord, UnknownVersionError
from engine.deliveries.client import Outcome
from engine.retry import Decision

STARTED = dt.datetime(2024, 5, 1, 12, 0, 0, 250_000)
SUCCEED = Decision("succeed")


def record(decision: Decision = SUCCEED, status: int = 200) -> OutcomeRecord:
    return OutcomeRecord.of("ep_1", "dlv_1", Outcome(STARTED, 12.0, status_code=status), decision)


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


def test_an_outcome_record_comes_back_from_its_json_unchanged() -> None:
    sent = record()

    data = through_json(sent.to_json())

    assert data["version"] == OUTCOME_VERSION
    assert OutcomeRecord.from_json(data) == sent
    assert OutcomeRecord.from_json(data).at == STARTED


def test_a_decision_that_ends_the_delivery_marks_its_record_quarantined() -> None:
    assert record(Decision("quarantine", reason="exhausted"), 500).quarantined is True
    assert record(Decision("disable"), 410).quarantined is True
    assert record(Decision("retry", delay_s=5.0), 500).quarantined is False


@pytest.mark.parametrize(
    ("row", "quarantined"),
    [
        (["ep_1", False, 1714564800.25, 503, "dlv_1"], False),
        (["ep_1", False, 1714564800.25, 503, "dlv_1", True], True),
    ],
)
def test_a_version_0_row_left_in_a_queue_is_read_as_its_supervisor_read_it(
    row: list[Any], quarantined: bool
) -> None:
    read = OutcomeRecord.from_json(through_json(row))

    assert read.version == 0
    assert (read.endpoint_id, read.delivery_id, read.status_code) == ("ep_1", "dlv_1", 503)
    assert read.success is False and read.quarantined is quarantined
    assert read.at == dt.datetime(2024, 5, 1, 12, 0, 0, 250_000)


def test_a_record_of_an_unknown_version_is_refused_not_misread() -> None:
    data = {**record().to_json(), "version": OUTCOME_VERSION + 1}

    with pytest.raises(UnknownVersionError) as refused:
        OutcomeRecord.from_json(data)

    assert refused.value.version == OUTCOME_VERSION + 1


@pytest.mark.parametrize(
    "data",
    [
        {"version": OUTCOME_VERSION, "endpoint_id": "ep_1"},
        ["ep_1", True, 1.0],
        ["ep_1", True, "yesterday", 200, "dlv_1"],
        "ep_1",
    ],
)
def test_a_malformed_record_is_refused(data: Any) -> None:
    with pytest.raises(ValueError) as refused:
        OutcomeRecord.from_json(data)

    assert not isinstance(refused.value, UnknownVersionError)
