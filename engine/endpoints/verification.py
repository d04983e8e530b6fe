"""Endpoint verification: a signed challenge the endpoint must echo before it gets events.

An endpoint created with `verify` starts `unverified` and receives nothing.
The verify actor sends it one signed `webhook.verification` event (Standard
Webhooks headers, through the same SSRF-guarded client as deliveries):

    {"type": "webhook.verification", "timestamp": "...", "data": {"challenge": "..."}}

The endpoint proves it wants Hookline's events by answering 2xx within the
request timeout with the challenge echoed, as JSON `{"challenge": "..."}` or
as the plain body. Then it becomes `active`; otherwise it stays `unverified`
with the reason in `verification_error`, and may be asked again.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass

from engine import signing
from engine.db.models import Endpoint, db, utcnow
from engine.deliveries.client import Outcome, Request
from engine.endpoints import secrets as endpoint_secrets
from engine.endpoints import states
from engine.errors import CryptoError
from engine.ids import new_id
from engine.sealed_fields import open_headers
from engine.secretbox import SecretBox

EVENT_TYPE = "webhook.verification"
CHALLENGE_BYTES = 32
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Challenge:
    """One verification request and the answer it expects."""

    endpoint_id: str
    challenge: str
    request: Request


def challenge_body(challenge: str, sent_at: dt.datetime) -> bytes:
    """The verification event, in the same envelope as every delivery."""
    stamp = sent_at.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    document = {"type": EVENT_TYPE, "timestamp": stamp, "data": {"challenge": challenge}}
    return json.dumps(document, separators=(",", ":")).encode()


def build_challenge(
    endpoint: Endpoint,
    box: SecretBox,
    *,
    user_agent: str,
    timestamp: int,
    challenge: str | None = None,
    now: dt.datetime | None = None,
) -> Challenge:
    """The signed verification request for an endpoint, with a fresh random challenge.

    Raises:
        CryptoError: the endpoint's secret does not decrypt.
    """
    now = now or utcnow()
    challenge = challenge or secrets.token_urlsafe(CHALLENGE_BYTES)
    body = challenge_body(challenge, now)
    signers = endpoint_secrets.signing_secrets(endpoint, box, now=now)
    headers = open_headers(endpoint.headers, box, endpoint.id)
    headers.update(signing.webhook_headers(signers, new_id("vrf"), timestamp, body))
    headers["content-type"] = "application/json"
    headers["user-agent"] = user_agent
    return Challenge(endpoint.id, challenge, Request(url=endpoint.url, headers=headers, body=body))


def judge(outcome: Outcome, challenge: str) -> str | None:
    """None when the answer proves the endpoint, otherwise why it does not."""
    if not outcome.success:
        return outcome.error_detail or f"HTTP {outcome.status_code}"
    text = (outcome.response_body or "").strip()
    if text == challenge:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("challenge") == challenge:
        return None
    return f"HTTP {outcome.status_code} without the challenge echoed in the body"


def start(endpoint_id: str, box: SecretBox, *, user_agent: str, timestamp: int) -> Challenge | None:
    """Build the challenge for a live endpoint; None when it is gone or cannot be signed."""
    endpoint = Endpoint.get_or_none((Endpoint.id == endpoint_id) & Endpoint.deleted_at.is_null())
    if endpoint is None:
        return None
    try:
        return build_challenge(endpoint, box, user_agent=user_agent, timestamp=timestamp)
    except CryptoError as exc:
        _store(endpoint_id, endpoint.url, str(exc), utcnow())
        return None


def finish(challenge: Challenge, outcome: Outcome) -> str | None:
    """Record the answer; an `unverified` endpoint that echoed becomes `active`.

    Answers None on success, otherwise the reason stored in `verification_error`.
    A result for a URL the endpoint no longer has is dropped.
    """
    error = judge(outcome, challenge.challenge)
    _store(challenge.endpoint_id, challenge.request.url, error, utcnow())
    return error


def _store(endpoint_id: str, url: str, error: str | None, now: dt.datetime) -> None:
    current = (Endpoint.id == endpoint_id) & (Endpoint.url == url) & Endpoint.deleted_at.is_null()
    changes: dict[object, object] = {
        Endpoint.verification_attempted_at: now,
        Endpoint.verification_error: None if error is None else error[:MAX_ERROR_CHARS],
    }
    with db.atomic():
        if error is None:
            changes[Endpoint.verified_at] = now
            states.move(current, to=states.ACTIVE, from_=(states.UNVERIFIED,), updated_at=now)
        Endpoint.update(changes).where(current).execute()
