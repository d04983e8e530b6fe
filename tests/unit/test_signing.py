"""Standard Webhooks v1 signing against the spec vector and the reference library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from engine.signing import (
    InvalidSecretError,
    SignatureError,
    SigningError,
    decode_secret,
    generate_secret,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_spec_test_vector_signs_to_the_spec_signature() -> None:
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_headers_carry_id_timestamp_and_signature() -> None:
    headers = webhook_headers([SPEC_SECRET], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 32
    assert generate_secret() != secret


def test_the_reference_library_verifies_what_we_sign() -> None:
    secret, body, now = (
        generate_secret(),
        b'{"type": "billing.paid", "n": 1}',
        int(time.time()),
    )
    headers = webhook_headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"type": "billing.paid", "n": 1}


def test_we_verify_what_the_reference_library_signs() -> None:
    secret, body, now = generate_secret(), b'{"a": 1}', int(time.time())
    when = datetime.fromtimestamp(now, UTC)
    signature = Webhook(secret).sign("msg_2", when, body.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    verify(secret, headers, body, now=now)


def test_during_a_rotation_either_secret_verifies_the_message() -> None:
    old, new, body, now = generate_secret(), generate_secret(), b"{}", int(time.time())
    headers = webhook_headers([old, new], "msg_3", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        verify(secret, headers, body, now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, body, now=now)


def test_a_tampered_body_fails_verification() -> None:
    secret, now = generate_secret(), int(time.time())
    headers = webhook_headers([secret], "msg_4", now, b'{"amount": 10}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"amount": 99}', headers)
    with pytest.raises(SignatureError):
        verify(secret, headers, b'{"amount": 99}', now=now)


def test_a_changed_id_or_timestamp_fails_verification() -> None:
    headers = webhook_headers([SPEC_SECRET], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    with pytest.raises(SignatureError):
        verify(
            SPEC_SECRET,
            {**headers, "webhook-id": "msg_other"},
            SPEC_BODY,
            now=SPEC_TIMESTAMP,
        )
    moved = {**headers, "webhook-timestamp": str(SPEC_TIMESTAMP + 1)}
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, moved, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verification_accepts_the_spec_vector_and_any_header_case() -> None:
    headers = {
        "Webhook-Id": SPEC_MSG_ID,
        "WEBHOOK-TIMESTAMP": str(SPEC_TIMESTAMP),
        "webhook-signature": f"v1a,unknown {SPEC_SIGNATURE}",
    }
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 300)


@pytest.mark.parametrize("skew_s", [-301, 301, 10_000])
def test_a_timestamp_outside_the_tolerance_fails_verification(skew_s: int) -> None:
    headers = webhook_headers([SPEC_SECRET], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    with pytest.raises(SignatureError, match="away from now"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + skew_s)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_fails_verification(missing: str) -> None:
    headers = webhook_headers([SPEC_SECRET], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize("timestamp", ["1614265330.5", "-1", "abc", "１６１４２６５３３０"])
def test_a_malformed_timestamp_fails_verification(timestamp: str) -> None:
    headers = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": timestamp,
        "webhook-signature": SPEC_SIGNATURE,
    }
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_a_non_ascii_signature_fails_verification_without_crashing() -> None:
    headers = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": "v1,é",
    }
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_unpadded_base64_secrets_are_accepted() -> None:
    key = bytes(range(25))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert decode_secret(unpadded) == key


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(bytes(23)).decode(),  # too short
        "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
    ],
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(InvalidSecretError):
        decode_secret(secret)


def test_the_key_size_bounds_are_inclusive() -> None:
    for size in (24, 64):
        assert len(decode_secret("whsec_" + base64.b64encode(bytes(size)).decode())) == size


def test_signing_needs_at_least_one_secret() -> None:
    with pytest.raises(InvalidSecretError):
        signature_header([], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)


def test_a_single_secret_string_is_not_mistaken_for_a_list() -> None:
    with pytest.raises(TypeError):
        signature_header(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)


def test_signing_errors_are_value_errors() -> None:
    assert issubclass(InvalidSecretError, SigningError)
    assert issubclass(SignatureError, SigningError)
    assert issubclass(SigningError, ValueError)
