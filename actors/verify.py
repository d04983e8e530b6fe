"""The verification actor: `verify_endpoint(endpoint_id)` on the `hookline.verify` queue.

A thin shell: build the challenge, send it through the process's SSRF-guarded
client, record the answer. Enqueued by the API when an endpoint is created
with `verify`, when an unverified endpoint moves, and on `POST .../verify`.
"""

from __future__ import annotations

import time

import structlog
from dramatiq.asyncio import async_to_sync

from actors.runtime import USER_AGENT, Runtime
from engine.endpoints import verification

log = structlog.get_logger("hookline.verification")

QUEUE_NAME = "hookline.verify"


def verify_endpoint(rt: Runtime, endpoint_id: str) -> None:
    """Send one verification challenge to an endpoint and record the answer."""
    with rt.database.connection_context():
        challenge = verification.start(
            endpoint_id, rt.box, user_agent=USER_AGENT, timestamp=int(time.time())
        )
    if challenge is None:
        return
    assert rt.client is not None, "the HttpClient middleware opens the client at boot"
    outcome = async_to_sync(rt.client.send)(challenge.request)
    with rt.database.connection_context():
        error = verification.finish(challenge, outcome)
    log.info(
        "endpoint_verification_attempted",
        endpoint_id=endpoint_id,
        verified=error is None,
        status_code=outcome.status_code,
        error_class=outcome.error_class,
        error=error,
        duration_ms=round(outcome.duration_ms, 1),
    )
