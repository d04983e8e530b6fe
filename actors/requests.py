"""What the `fan_out` and `deliver` actors share: signed requests, handed to the pipeline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import structlog

from actors.pipeline import Pipeline
from actors.runtime import USER_AGENT, Runtime
from engine.db.models import utcnow
from engine.deliveries import record as deliveries
from engine.deliveries import schedule
from engine.deliveries.client import Outcome, Request
from engine.endpoints import transforms
from engine.endpoints.transforms import TransformError
from engine.errors import CryptoError

Work = list[tuple[deliveries.Claim, Request | Outcome]]

log = structlog.get_logger("hookline.delivery")


def pipeline_of(rt: Runtime) -> Pipeline:
    """The process's attempt pipeline, which the worker's middleware opened at boot."""
    assert rt.pipeline is not None, "the Attempts middleware opens the pipeline at boot"
    return rt.pipeline


def event_loop(rt: Runtime) -> asyncio.AbstractEventLoop:
    """The event loop the AsyncIO middleware runs, where attempts are sent."""
    assert rt.loop is not None, "the HttpClient middleware opens the client on the loop"
    return rt.loop


def sender(rt: Runtime) -> Callable[[Request], Any]:
    """The process's HTTP client's `send`."""
    assert rt.client is not None, "the HttpClient middleware opens the client at boot"
    return rt.client.send


def keep_fair(rt: Runtime, claimed: list[deliveries.Claim]) -> list[deliveries.Claim]:
    """The claims to attempt now; those over their host's share of a crowded pipeline go back.

    See `actors.pipeline.share` and `give_back`.
    """
    kept, later = pipeline_of(rt).split(claimed)
    give_back(rt, later)
    return kept


def give_back(rt: Runtime, later: list[tuple[deliveries.Claim, float]]) -> None:
    """Claims not attempted after all: `scheduled` again, each after its delay, attempt unspent.

    `engine.deliveries.schedule.give_back`; if that fails, their leases run out and
    the scheduler publishes them again.
    """
    if not later:
        return
    try:
        with rt.database.connection_context():
            moved = schedule.give_back([(one.delivery.id, delay) for one, delay in later])
    except Exception:  # their leases run out instead
        log.exception("held_back_not_recorded", deliveries=len(later))
        return
    log.info(
        "deliveries_held_back",
        deliveries=moved,
        endpoint_ids=sorted({one.endpoint.id for one, _delay in later}),
        longest_delay_s=round(max(delay for _one, delay in later), 3),
    )


def build(rt: Runtime, claimed: list[deliveries.Claim]) -> Work:
    """Each claimed delivery's signed request, or the outcome that stands for it.

    A transform that fails stands as an outcome too (`transform_error`): no request is
    made, and the event's other deliveries go on.
    """
    timestamp = int(time.time())
    work: Work = []
    bodies: dict[str, bytes] = {}  # one body per event, shared by its deliveries
    parsed: dict[str, Any] = {}  # one parsed payload per event, for the transforms
    for one in claimed:
        body = bodies.get(one.event.id)
        if body is None:
            body = bodies[one.event.id] = deliveries.envelope(one.event)
        try:
            if one.endpoint.transform:
                one = _transformed(rt, one, parsed)
            request: Request | Outcome = deliveries.build_request(
                one, user_agent=USER_AGENT, timestamp=timestamp, box=rt.box, body=body
            )
        except TransformError as exc:  # the endpoint's transform: quarantined, never retried
            request = Outcome(
                utcnow(), 0.0, error_class=transforms.ERROR_CLASS, error_detail=str(exc)
            )
        except CryptoError as exc:  # a key is missing: an attempt that failed, retried later
            request = Outcome(
                utcnow(), 0.0, error_class="secret_unavailable", error_detail=str(exc)
            )
        work.append((one, request))
    return work


def _transformed(
    rt: Runtime, claimed: deliveries.Claim, parsed: dict[str, Any]
) -> deliveries.Claim:
    """The claim with its transformed body; the event's payload parsed once per batch."""
    data = parsed.get(claimed.event.id)
    if data is None:
        data = parsed[claimed.event.id] = json.loads(claimed.event.payload)
    return deliveries.transformed(claimed, max_bytes=rt.settings.max_body_bytes, data=data)


def attempt(rt: Runtime, claimed: list[deliveries.Claim], work: Work | None = None) -> None:
    """Hand the claimed deliveries, for which room is reserved, to the pipeline.

    `work` is their requests when the caller built them already.
    """
    if not claimed:
        return
    pipeline = pipeline_of(rt)
    if work is None:
        try:
            work = build(rt, claimed)
        except BaseException:
            pipeline.release(len(claimed))  # their leases run out; the scheduler sends them
            raise
    pipeline.run(event_loop(rt), sender(rt), work)
