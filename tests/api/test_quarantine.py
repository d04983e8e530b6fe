"""`/v1/quarantine`, retry-now and recover: the ways back for deliveries that gave up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.deliveries import fanout
from tests.api.support import Api, Recorder, assert_problem, attempt, outcome

QUARANTINE = "/v1/quarantine"
RETRY = "/v1/deliveries/{delivery_id}/retry"
RECOVER = "/v1/endpoints/{endpoint_id}/recover"


@pytest.fixture
def quarantined(
    publish: Callable[..., dict[str, Any]], create_endpoint: Callable[..., dict[str, Any]]
) -> tuple[str, str]:
    """An endpoint and one delivery to it that expired into quarantine."""
    endpoint_id = create_endpoint()["id"]
    [delivery_id] = fanout.fan_out(publish()["id"])
    attempt(delivery_id, outcome(503, error_class="http_status"), max_age_s=0)
    return endpoint_id, delivery_id


def test_a_quarantined_delivery_is_listed_with_its_reason(
    tenant: Api, stranger: Api, quarantined: tuple[str, str]
) -> None:
    _, delivery_id = quarantined

    [listed] = tenant.get(QUARANTINE).json["data"]

    assert listed["id"] == delivery_id
    assert listed["status"] == "quarantined"
    assert listed["quarantine_reason"] == "expired"
    assert listed["quarantined_at"] is not None
    assert tenant.get(QUARANTINE, params={"endpoint_id": "ep_other"}).json["data"] == []
    assert stranger.get(QUARANTINE).json["data"] == []


def test_retrying_a_quarantined_delivery_queues_and_publishes_it(
    tenant: Api, recorder: Recorder, quarantined: tuple[str, str]
) -> None:
    _, delivery_id = quarantined

    result = tenant.post(RETRY, delivery_id=delivery_id)

    assert result.status_code == 202
    assert result.json["status"] == "queued"
    assert result.json["quarantine_reason"] is None
    assert recorder.calls[-1] == ("deliver", delivery_id)
    assert tenant.get(QUARANTINE).json["data"] == []


def test_retrying_a_delivery_that_is_not_stuck_is_409(
    tenant: Api,
    publish: Callable[..., dict[str, Any]],
    create_endpoint: Callable[..., dict[str, Any]],
) -> None:
    create_endpoint()
    [delivery_id] = fanout.fan_out(publish()["id"])

    problem = assert_problem(tenant.post(RETRY, delivery_id=delivery_id), 409)
    assert problem["type"] == "urn:hookline:problem:conflict"


def test_recovering_an_endpoint_reschedules_its_quarantine(
    tenant: Api, quarantined: tuple[str, str]
) -> None:
    endpoint_id, delivery_id = quarantined

    result = tenant.post(RECOVER, {"since": "2000-01-01T00:00:00Z"}, endpoint_id=endpoint_id)

    assert result.status_code == 202
    assert result.json == {"recovered": 1}
    assert (
        tenant.get("/v1/deliveries/{delivery_id}", delivery_id=delivery_id).json["status"]
        == "scheduled"
    )


def test_another_tenant_can_neither_retry_nor_recover(
    stranger: Api, quarantined: tuple[str, str]
) -> None:
    endpoint_id, delivery_id = quarantined

    assert_problem(stranger.post(RETRY, delivery_id=delivery_id), 404)
    assert_problem(
        stranger.post(RECOVER, {"since": "2000-01-01T00:00:00Z"}, endpoint_id=endpoint_id), 404
    )


@pytest.mark.parametrize(
    ("doc", "status", "field"),
    [
        ({"since": "yesterday"}, 400, "since"),
        ({"since": "2026-01-01T00:00:00"}, 400, "since"),
        ({}, 422, "since"),
        ({"since": 5}, 422, "since"),
        ({"since": "x", "extra": 1}, 422, "extra"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "until"),
        pytest.param(
            {"since": "0001-01-01T00:00:00+01:00"},
            400,
            "since",
            id="year-1-overflow",
        ),
    ],
)
def test_a_bad_recover_window_is_a_problem_naming_the_field(
    tenant: Api,
    create_endpoint: Callable[..., dict[str, Any]],
    doc: dict[str, Any],
    status: int,
    field: str,
) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(tenant.post(RECOVER, doc, endpoint_id=endpoint_id), status, field)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("since", "yesterday"),
        ("until", "2026-01-01"),
        ("since", "2026-01-01T00:00:00"),
        ("event_type", "x" * 129),
        ("endpoint_id", "e" * 65),
        pytest.param(
            "since",
            "0001-01-01T00:00:00+01:00",
            id="since-overflow",
        ),
        pytest.param(
            "until",
            "9999-12-31T23:59:59-01:00",
            id="until-overflow",
        ),
    ],
)
def test_a_bad_quarantine_filter_is_400_naming_it(tenant: Api, param: str, value: str) -> None:
    assert_problem(tenant.get(QUARANTINE, params={param: value}), 400, param)
