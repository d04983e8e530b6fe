"""Endpoint verification through the API: unverified on create, queued, retried on demand."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from engine import secretbox
from engine.db.models import utcnow
from engine.deliveries import fanout
from engine.deliveries.client import Outcome
from engine.endpoints import verification
from engine.settings import Settings
from tests.api.support import Api, BrokenBroker, Recorder, assert_problem
from tests.factories import endpoint_body

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
VERIFY = "/v1/endpoints/{endpoint_id}/verify"
CreateEndpoint = Callable[..., dict[str, Any]]


def verifications(recorder: Recorder) -> list[str]:
    return [ident for kind, ident in recorder.calls if kind == "verify_endpoint"]


def answer_challenge(endpoint_id: str, settings: Settings, *, echo: bool) -> str | None:
    """Run what the verify actor runs, with the endpoint's answer made up."""
    box = secretbox.from_settings(settings)
    challenge = verification.start(endpoint_id, box, user_agent="test", timestamp=1)
    assert challenge is not None
    body = json.dumps({"challenge": challenge.challenge}) if echo else "hello"
    outcome = Outcome(started_at=utcnow(), duration_ms=1.0, status_code=200, response_body=body)
    return verification.finish(challenge, outcome)


def test_an_endpoint_created_with_verify_is_unverified_and_queued_for_verification(
    tenant: Api, recorder: Recorder
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True))

    assert created.status_code == 201
    assert created.json["status"] == "unverified"
    assert created.json["verified_at"] is None and created.json["verification_error"] is None
    assert verifications(recorder) == [created.json["id"]]


def test_an_endpoint_created_without_verify_is_active_and_not_challenged(
    create_endpoint: CreateEndpoint, recorder: Recorder
) -> None:
    created = create_endpoint()

    assert created["status"] == "active"
    assert verifications(recorder) == []


def test_the_operator_can_make_verification_the_default(
    make_api: Callable[..., Api], sqlite_settings: Settings, tenant: Api, recorder: Recorder
) -> None:
    strict = make_api(sqlite_settings.with_overrides(verify_endpoints_default=True))

    created = strict.as_key(tenant.key).post(ENDPOINTS, endpoint_body(verify=False))

    assert created.json["status"] == "unverified"
    assert verifications(recorder) == [created.json["id"]]


def test_an_unverified_endpoint_receives_no_deliveries(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Callable[..., dict[str, Any]]
) -> None:
    unverified = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json
    active = create_endpoint()

    event = publish()
    fanout.fan_out(event["id"])

    listed = tenant.get("/v1/deliveries", params={"event_id": event["id"]}).json["data"]
    assert [row["endpoint_id"] for row in listed] == [active["id"]]
    assert unverified["id"] not in json.dumps(listed)


def test_an_echoed_challenge_activates_the_endpoint(
    tenant: Api, sqlite_settings: Settings, publish: Callable[..., dict[str, Any]]
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json

    assert answer_challenge(created["id"], sqlite_settings, echo=True) is None

    fetched = tenant.get(ENDPOINT, endpoint_id=created["id"]).json
    assert fetched["status"] == "active"
    assert fetched["verified_at"] is not None and fetched["verification_error"] is None
    event = publish()
    assert len(fanout.fan_out(event["id"])) == 1


def test_a_failed_verification_is_shown_on_the_endpoint(
    tenant: Api, sqlite_settings: Settings
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json

    error = answer_challenge(created["id"], sqlite_settings, echo=False)

    fetched = tenant.get(ENDPOINT, endpoint_id=created["id"]).json
    assert fetched["status"] == "unverified"
    assert fetched["verification_error"] == error and "challenge" in (error or "")
    assert fetched["verification_attempted_at"] is not None and fetched["verified_at"] is None


def test_verify_queues_another_attempt_and_answers_202_with_the_endpoint(
    tenant: Api, recorder: Recorder
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json

    result = tenant.post(VERIFY, endpoint_id=created["id"])

    assert result.status_code == 202
    assert result.json["id"] == created["id"] and result.json["status"] == "unverified"
    assert verifications(recorder) == [created["id"], created["id"]]


def test_an_active_endpoint_may_be_verified_too(
    tenant: Api, create_endpoint: CreateEndpoint, recorder: Recorder
) -> None:
    created = create_endpoint()

    result = tenant.post(VERIFY, endpoint_id=created["id"])

    assert result.status_code == 202 and result.json["status"] == "active"
    assert verifications(recorder) == [created["id"]]


def test_verify_with_the_broker_down_is_503_and_creation_still_succeeds(
    make_api: Callable[..., Api], tenant: Api
) -> None:
    broken = make_api(enqueue=BrokenBroker()).as_key(tenant.key)

    created = broken.post(ENDPOINTS, endpoint_body(verify=True))
    retried = broken.post(VERIFY, endpoint_id=created.json["id"])

    assert created.status_code == 201 and created.json["status"] == "unverified"
    problem = assert_problem(retried, 503)
    assert retried.headers.get("retry-after")
    assert "broker" in problem["detail"]


@pytest.mark.parametrize("who", ["stranger", "unknown"])
def test_verifying_an_endpoint_that_is_not_yours_is_404(
    tenant: Api, stranger: Api, recorder: Recorder, who: str
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json
    target = created["id"] if who == "stranger" else "ep_01HZZZZZZZZZZZZZZZZZZZZZZZ"

    result = stranger.post(VERIFY, endpoint_id=target)

    assert_problem(result, 404)
    assert verifications(recorder) == [created["id"]]


def test_moving_an_unverified_endpoint_queues_a_new_challenge(
    tenant: Api, recorder: Recorder
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json

    tenant.patch(ENDPOINT, {"url": "https://elsewhere.example.com/h"}, endpoint_id=created["id"])
    tenant.patch(ENDPOINT, {"description": "no move"}, endpoint_id=created["id"])

    assert verifications(recorder) == [created["id"], created["id"]]


def test_moving_a_verified_endpoint_makes_it_prove_the_new_url(
    tenant: Api, sqlite_settings: Settings, recorder: Recorder
) -> None:
    created = tenant.post(ENDPOINTS, endpoint_body(verify=True)).json
    answer_challenge(created["id"], sqlite_settings, echo=True)

    moved = tenant.patch(
        ENDPOINT, {"url": "https://elsewhere.example.com/h"}, endpoint_id=created["id"]
    )

    assert moved.json["status"] == "unverified" and moved.json["verified_at"] is None
    assert verifications(recorder) == [created["id"], created["id"]]
