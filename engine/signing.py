"""Standard Webhooks v1 signatures: `whsec_` secrets, HMAC-SHA256, rotation.

A delivery carries three headers: `webhook-id` (the same on every retry),
`webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`,
a space-separated list of `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
During a secret rotation every live secret signs, so a receiver holding
either the old or the new secret accepts the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from secrets import token_bytes

from engine.errors import MalformedError

__all__ = [
    "SECRET_PREFIX",
    "InvalidSecretError",
    "SignatureError",
    "SigningError",
    "decode_secret",
    "generate_secret",
    "sign",
    "signature_header",
    "verify",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
MIN_KEY_BYTES = 24  # the spec's bounds for a secret's decoded key
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32


class SigningError(MalformedError):
    """A secret could not be used, or a signature did not verify."""


class InvalidSecretError(SigningError):
    """A secret is not `whsec_` followed by base64 of 24 to 64 bytes."""


class SignatureError(SigningError):
    """A message's headers or signature do not verify."""


def generate_secret() -> str:
    """Return a fresh secret: `whsec_` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(NEW_KEY_BYTES)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key carried by a `whsec_<base64>` secret.

    Raises:
        InvalidSecretError: the prefix is missing, the base64 is malformed,
            or the key is shorter than 24 or longer than 64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError(f"a secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    # Other implementations accept unpadded base64; pad it rather than refuse.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecretError("a secret's key is not valid base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecretError(
            f"a secret's key is {len(key)} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES}"
        )
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return one `v1,<base64>` signature of `msg_id.timestamp.body`.

    Raises:
        InvalidSecretError: the secret cannot be decoded.
    """
    key = decode_secret(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value: one signature per secret, space-separated.

    Raises:
        InvalidSecretError: no secret was given, or one cannot be decoded.
        TypeError: `secrets` is a single string rather than a sequence of them.
    """
    if isinstance(secrets, str):
        raise TypeError("pass a sequence of secrets, not one secret string")
    if not secrets:
        raise InvalidSecretError("at least one secret is needed to sign")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Return the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

    Raises:
        InvalidSecretError: no secret was given, or one cannot be decoded.
    """
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int,
    tolerance_s: int = 300,
) -> None:
    """Check a message's Standard Webhooks headers against one secret.

    Raises:
        SignatureError: a header is missing, the timestamp is malformed or
            further than `tolerance_s` from `now`, or no `v1` signature matches.
        InvalidSecretError: the secret cannot be decoded.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp_text and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    timestamp = _parse_timestamp(timestamp_text)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"timestamp {timestamp} is more than {tolerance_s} s away from now ({now})"
        )
    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    for candidate in signatures.split():
        # Compare every candidate in constant time; unknown versions never match.
        if hmac.compare_digest(expected, candidate.encode("utf-8")):
            return
    raise SignatureError("no signature matches")


def _parse_timestamp(text: str) -> int:
    """Read a `webhook-timestamp` header as whole Unix seconds.

    Raises:
        SignatureError: the value is not an unsigned decimal integer.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise SignatureError(f"webhook-timestamp {text!r} is not Unix seconds")
    return int(text)
