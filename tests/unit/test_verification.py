"""Endpoint verification: the challenge request, the judgement of the answer, the record."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from engine.db.models import Endpoint, utcnow
from engine.deliveries.client import Outcome
from engine.endpoints import crud as endpoints
from engine.endpoints import secrets as endpoint_secrets
from engine.endpoints import verification
from engine.secretbox import SecretBox
from engine.ssrf import AddressPolicy
from engine.tenancy.tenants import create_tenant

POLICY = AddressPolicy(allow_private=True)
CHALLENGE = "c-0123456789"


def answer(status: int | None = 200, body: str | None = None, **fields: Any) -> Outcome:
    return Outcome(
        started_at=utcnow(), duration_ms=1.0, status_code=status, response_body=body, **fields
    )


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


@pytest.fixture
def unverified(sqlite_db: Any, box: SecretBox) -> tuple[Endpoint, str]:
    tenant = create_tenant("acme")[0]
    return endpoints.create_endpoint(
        tenant.id,
        {"url": "https://example.com/hook", "verify": True, "headers": {"X-Team": "t1"}},
        POLICY,
        box,
    )


def fresh(row: Endpoint) -> Endpoint:
    return Endpoint.get_by_id(row.id)


@pytest.mark.parametrize(
    "body",
    [
        CHALLENGE,
        f"  {CHALLENGE}\n",
        json.dumps({"challenge": CHALLENGE}),
        json.dumps({"x": 1, "challenge": CHALLENGE}),
    ],
    ids=["plain", "plain-with-whitespace", "json", "json-with-more"],
)
def test_a_2xx_echoing_the_challenge_proves_the_endpoint(body: str) -> None:
    assert verification.judge(answer(200, body), CHALLENGE) is None
    assert verification.judge(answer(204, body), CHALLENGE) is None


@pytest.mark.parametrize(
    "body",
    [
        "",
        "ok",
        CHALLENGE[:-1],
        json.dumps({"challenge": "other"}),
        json.dumps([CHALLENGE]),
        json.dumps({"data": {"challenge": CHALLENGE}}),
        json.dumps(CHALLENGE + "x"),
        None,
    ],
    ids=["empty", "ok", "prefix", "wrong-json", "json-list", "nested", "json-string-other", "none"],
)
def test_a_2xx_without_the_challenge_fails_saying_so(body: str | None) -> None:
    error = verification.judge(answer(200, body), CHALLENGE)

    assert error is not None and "challenge" in error


def test_a_non_2xx_echoing_the_challenge_still_fails() -> None:
    error = verification.judge(
        answer(302, CHALLENGE, error_class="http_status", error_detail="HTTP 302 Found"),
        CHALLENGE,
    )

    assert error == "HTTP 302 Found"


def test_a_transport_failure_fails_with_its_detail() -> None:
    outcome = answer(
        None,
        None,
        error_class="refused_address",
        error_detail="refused to connect to 127.0.0.1: loopback",
    )

    assert verification.judge(outcome, CHALLENGE) == "refused to connect to 127.0.0.1: loopback"


def test_the_challenge_body_is_a_verification_event() -> None:
    body = json.loads(verification.challenge_body(CHALLENGE, utcnow()))

    assert body["type"] == "webhook.verification"
    assert body["data"] == {"challenge": CHALLENGE}
    assert body["timestamp"].endswith("Z")


def test_the_challenge_request_is_signed_like_a_delivery(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, secret = unverified

    built = verification.build_challenge(
        row, box, user_agent="Hookline/test", timestamp=int(time.time())
    )

    request = built.request
    assert request.url == row.url
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Hookline/test"
    assert request.headers["X-Team"] == "t1"
    assert request.headers["webhook-id"].startswith("vrf_")
    verified = Webhook(secret).verify(request.body, dict(request.headers))
    assert verified["data"]["challenge"] == built.challenge
    assert len(built.challenge) >= 40


def test_each_challenge_is_new(unverified: tuple[Endpoint, str], box: SecretBox) -> None:
    row, _ = unverified
    made = {
        verification.build_challenge(row, box, user_agent="x", timestamp=1).challenge
        for _ in range(5)
    }

    assert len(made) == 5


def test_during_a_rotation_the_challenge_carries_both_signatures(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, old = unverified
    new = endpoint_secrets.rotate(row, box, grace_period_s=60).secret

    request = verification.build_challenge(
        fresh(row), box, user_agent="x", timestamp=int(time.time())
    ).request

    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, dict(request.headers))


def test_an_echo_makes_an_unverified_endpoint_active(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    challenge = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert challenge is not None

    error = verification.finish(
        challenge, answer(200, json.dumps({"challenge": challenge.challenge}))
    )

    stored = fresh(row)
    assert error is None
    assert stored.status == "active"
    assert stored.verified_at is not None and stored.verification_attempted_at is not None
    assert stored.verification_error is None


def test_a_failure_leaves_the_endpoint_unverified_with_the_reason(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    challenge = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert challenge is not None

    error = verification.finish(challenge, answer(200, "ok"))

    stored = fresh(row)
    assert stored.status == "unverified"
    assert stored.verification_error == error and "challenge" in error
    assert stored.verified_at is None and stored.verification_attempted_at is not None


def test_a_later_success_clears_the_error(unverified: tuple[Endpoint, str], box: SecretBox) -> None:
    row, _ = unverified
    first = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert first is not None
    verification.finish(first, answer(500, "", error_class="http_status", error_detail="HTTP 500"))
    second = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert second is not None

    verification.finish(second, answer(200, second.challenge))

    assert fresh(row).verification_error is None and fresh(row).status == "active"


def test_an_answer_for_a_url_the_endpoint_left_is_dropped(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    challenge = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert challenge is not None
    endpoints.update_endpoint(
        row.tenant_id,
        row.id,
        {"url": "https://example.org/moved"},
        POLICY,
        SecretBox(os.urandom(32)),
    )

    verification.finish(challenge, answer(200, challenge.challenge))

    assert fresh(row).status == "unverified" and fresh(row).verified_at is None


def test_a_success_does_not_revive_a_disabled_endpoint(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    Endpoint.update(status="disabled").where(Endpoint.id == row.id).execute()
    challenge = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert challenge is not None

    verification.finish(challenge, answer(200, challenge.challenge))

    assert fresh(row).status == "disabled" and fresh(row).verified_at is not None


def test_a_deleted_endpoint_is_not_challenged(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    endpoints.delete_endpoint(row.tenant_id, row.id)

    assert verification.start(row.id, box, user_agent="x", timestamp=1) is None
    assert verification.start("ep_missing", box, user_agent="x", timestamp=1) is None


def test_a_secret_that_does_not_decrypt_is_recorded_not_raised(
    unverified: tuple[Endpoint, str],
) -> None:
    row, _ = unverified

    assert (
        verification.start(row.id, SecretBox(os.urandom(32)), user_agent="x", timestamp=1) is None
    )

    assert "HOOKLINE_SECRET_KEY_PREVIOUS" in (fresh(row).verification_error or "")
    assert fresh(row).status == "unverified"


def test_moving_a_verified_endpoint_makes_it_unverified_again(
    unverified: tuple[Endpoint, str], box: SecretBox
) -> None:
    row, _ = unverified
    challenge = verification.start(row.id, box, user_agent="x", timestamp=1)
    assert challenge is not None
    verification.finish(challenge, answer(200, challenge.challenge))

    moved = endpoints.update_endpoint(
        row.tenant_id, row.id, {"url": "https://example.org/new"}, POLICY, SecretBox(os.urandom(32))
    )
    same = endpoints.update_endpoint(
        row.tenant_id, row.id, {"description": "x"}, POLICY, SecretBox(os.urandom(32))
    )

    assert moved.status == "unverified" and moved.verified_at is None
    assert same.status == "unverified"


def test_moving_an_endpoint_that_never_asked_for_verification_keeps_it_active(
    sqlite_db: Any, box: SecretBox
) -> None:
    tenant = create_tenant("acme")[0]
    row, _ = endpoints.create_endpoint(tenant.id, {"url": "https://example.com/a"}, POLICY, box)

    moved = endpoints.update_endpoint(
        tenant.id, row.id, {"url": "https://example.com/b"}, POLICY, SecretBox(os.urandom(32))
    )

    assert moved.status == "active"


def test_the_operator_default_verifies_even_when_the_body_says_no(
    sqlite_db: Any, box: SecretBox
) -> None:
    tenant = create_tenant("acme")[0]

    row, _ = endpoints.create_endpoint(
        tenant.id,
        {"url": "https://example.com/a", "verify": False},
        POLICY,
        box,
        verify_default=True,
    )

    assert row.status == "unverified"
