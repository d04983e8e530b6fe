"""The `deliver(delivery_ids)` actor on `hookline.deliver`: claim, send, record.

A thin shell over the engine: the claim runs in the worker thread, the HTTP
attempts on the process's event loop, the recording on the pipeline's
recorder thread (`actors.pipeline`).
"""

from __future__ import annotations

from actors import requests
from actors.runtime import Runtime
from engine.deliveries import record as deliveries

QUEUE_NAME = "hookline.deliver"


def deliver(rt: Runtime, delivery_ids: str | list[str], released: bool = False) -> None:
    """Make one attempt of each delivery (sent concurrently) and record what happened.

    Takes one id (as messages published before batching did) or a list. `released`:
    the deliveries' flow control released them (`actors.flow`), and they are taken
    without waiting for it again.
    """
    ids = [delivery_ids] if isinstance(delivery_ids, str) else list(delivery_ids)
    settings = rt.settings
    pipeline = requests.pipeline_of(rt)
    pipeline.reserve(len(ids))
    try:
        with rt.database.connection_context():
            claimed = deliveries.claim_many(
                ids,
                lease_s=settings.request_timeout_s + settings.lease_grace_s,
                released=released,
                max_lost=settings.max_lost_attempts,
            )
    except BaseException:
        pipeline.release(len(ids))
        raise
    pipeline.release(len(ids) - len(claimed))
    # A host crowding the pipeline waits in PostgreSQL; but what flow control released holds
    # its tokens and in-flight places already, and giving it back would leak them.
    kept = claimed if released else requests.keep_fair(rt, claimed)
    pipeline.release(len(claimed) - len(kept))
    requests.attempt(rt, kept)
