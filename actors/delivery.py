"""The delivery actors: `fan_out(event_ids)` and `deliver(delivery_ids)`.

Thin shells over the engine: the claim runs in the worker thread, the HTTP
attempts on the process's event loop, the recording on the pipeline's
recorder thread (`actors.pipeline`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import structlog
from dramatiq.asyncio import get_event_loop_thread

from actors import metrics, runtime
from actors.pipeline import Batch, Pipeline
from actors.supervise import outcome_row
from engine.db.models import utcnow
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome, Request
from engine.errors import CryptoError
from engine.retry import Decision

log = structlog.get_logger("hookline.delivery")
_stdlib_log = logging.getLogger("hookline.delivery")

# A fan-out claims (and sends itself) at most this many `deliver_batch`es in all.
FAN_OUT_CLAIM = 4


def fan_out(event_ids: str | list[str]) -> None:
    """Create the events' deliveries; send the first ones at once, publish the rest.

    Takes one event id, or the list the API publishes for the events that
    concurrent requests committed together (at most `deliver_batch`). The
    deliveries this worker sends itself, as many as `deliver_batch` for each
    event carried and `FAN_OUT_CLAIM` batches at most, are created already claimed
    (`engine.deliveries.fanout.fan_out_and_claim`): a fan-out to a few endpoints costs
    no `deliver` message at all. Their attempts start inside the fan-out's
    transaction, as soon as it knows them, and are recorded after its commit.
    The rest go out `deliver_batch` ids per message.
    """
    ids = [event_ids] if isinstance(event_ids, str) else list(event_ids)
    rt = runtime.current()
    settings = rt.settings
    pipeline = _pipeline(rt)
    started: list[Batch] = []
    built: list[list[tuple[deliveries.Claim, Request | Outcome]]] = []

    def send_now(plan: fanout.FanOut) -> None:
        # Writing the deliveries and committing them (three round trips, one a WAL flush)
        # was the longest step between an event's fan-out and its first attempt under
        # load: the attempts start before it, and their answers are recorded only once
        # the commit succeeded (see `Pipeline.start_held`).
        if plan.claimed:
            built.append(_requests(rt, plan.claimed))
            batch = pipeline.start_held(_loop(), _send(rt), built[0])
            if batch is not None:
                started.append(batch)

    try:
        with rt.database.connection_context():
            plan = fanout.fan_out_and_claim(
                ids,
                lease_s=settings.fan_out_lease_s,
                claim=settings.deliver_batch * min(len(ids), FAN_OUT_CLAIM),
                claim_lease_s=settings.request_timeout_s + settings.lease_grace_s,
                before_writing=send_now,
                memo=rt.endpoints,
            )
    except BaseException:
        # Not committed (or not known to be): nothing is recorded for these attempts, and
        # the message is retried. An endpoint may thus get the event twice, as it may
        # whenever an answer is lost; the webhook-id is the same both times.
        for batch in started:
            pipeline.drop_held(batch)
        raise
    for batch in started:
        pipeline.release_held(batch)
    if not started:
        # No room was free inside the transaction: wait for it now, as `deliver` does; a
        # wait here is shorter than the claims' lease, since room frees as attempts end.
        pipeline.reserve(len(plan.claimed))
    published = 0
    if plan.pending:
        published = rt.publisher.enqueue_many("deliver", plan.pending)
        with rt.database.connection_context():
            fanout.mark_queued(plan.pending[:published], lease_s=settings.queue_lease_s)
    if plan.claimed or plan.pending:
        log.info(
            "event_fanned_out",
            event_ids=ids,
            deliveries=len(plan.claimed) + len(plan.pending),
            sent_here=len(plan.claimed),
            published=published,
        )
    if started:
        pipeline.wait(started[0])
    elif built:  # signed already, inside the transaction
        pipeline.run(_loop(), _send(rt), built[0])
    else:
        _attempt(rt, plan.claimed)


def deliver(delivery_ids: str | list[str]) -> None:
    """Make one attempt of each delivery (sent concurrently) and record what happened.

    Takes one id (as messages published before batching did) or a list.
    """
    ids = [delivery_ids] if isinstance(delivery_ids, str) else list(delivery_ids)
    rt = runtime.current()
    settings = rt.settings
    pipeline = _pipeline(rt)
    pipeline.reserve(len(ids))
    try:
        with rt.database.connection_context():
            claimed = deliveries.claim_many(
                ids, lease_s=settings.request_timeout_s + settings.lease_grace_s
            )
    except BaseException:
        pipeline.release(len(ids))
        raise
    pipeline.release(len(ids) - len(claimed))
    _attempt(rt, claimed)


def _pipeline(rt: runtime.Runtime) -> Pipeline:
    assert rt.client is not None and rt.pipeline is not None, "the HttpClient middleware sets up"
    return rt.pipeline


def _attempt(rt: runtime.Runtime, claimed: list[deliveries.Claim]) -> None:
    """Hand the claimed deliveries, for which room is reserved, to the pipeline."""
    if not claimed:
        return
    assert rt.client is not None and rt.pipeline is not None
    try:
        work = _requests(rt, claimed)
    except BaseException:
        rt.pipeline.release(len(claimed))  # their leases run out; the scheduler sends them
        raise
    rt.pipeline.run(_loop(), _send(rt), work)


def _loop() -> asyncio.AbstractEventLoop:
    loop_thread = get_event_loop_thread()
    assert loop_thread is not None, "the AsyncIO middleware runs the event loop"
    return loop_thread.loop


def _send(rt: runtime.Runtime) -> Callable[[Request], Any]:
    assert rt.client is not None, "the HttpClient middleware sets up"
    return rt.client.send


def _requests(
    rt: runtime.Runtime, claimed: list[deliveries.Claim]
) -> list[tuple[deliveries.Claim, Request | Outcome]]:
    """Each claimed delivery's signed request, or the outcome that stands for it."""
    timestamp = int(time.time())
    work: list[tuple[deliveries.Claim, Request | Outcome]] = []
    bodies: dict[str, bytes] = {}  # one body per event, shared by its deliveries
    for one in claimed:
        body = bodies.get(one.event.id)
        if body is None:
            body = bodies[one.event.id] = deliveries.envelope(one.event)
        try:
            request: Request | Outcome = deliveries.build_request(
                one, user_agent=runtime.USER_AGENT, timestamp=timestamp, box=rt.box, body=body
            )
        except CryptoError as exc:  # a key is missing: an attempt that failed, retried later
            request = Outcome(
                utcnow(), 0.0, error_class="secret_unavailable", error_detail=str(exc)
            )
        work.append((one, request))
    return work


def after_record(claimed: deliveries.Claim, outcome: Outcome, decision: Decision) -> None:
    """Report a recorded attempt: to the supervisor, to the metrics, to the log."""
    rt = runtime.current()
    # A secret that does not decrypt is our fault, not the endpoint's: the breaker ignores it.
    if rt.outcomes is not None and outcome.error_class != "secret_unavailable":
        rt.outcomes.report(outcome_row(claimed.endpoint.id, claimed.delivery.id, outcome, decision))
    first = claimed.delivery.attempts == 1
    lag_s = (outcome.started_at - claimed.event.created_at).total_seconds() if first else None
    metrics.observe_attempt(outcome, decision, lag_s)
    # Every attempt is in the attempt log (`GET /v1/deliveries/{id}/attempts`); the
    # process log carries the failures, and the successes only at debug: at full speed
    # one line per success cost the worker 7 % of its CPU, and even a call that the level
    # then drops builds its whole event first.
    if outcome.success and not _stdlib_log.isEnabledFor(logging.DEBUG):
        return
    (log.debug if outcome.success else log.info)(
        "delivery_attempted",
        delivery_id=claimed.delivery.id,
        event_id=claimed.event.id,
        endpoint_id=claimed.endpoint.id,
        attempt=claimed.delivery.attempts,
        status_code=outcome.status_code,
        error_class=outcome.error_class,
        duration_ms=round(outcome.duration_ms, 1),
        decision=decision.action,
        delay_s=decision.delay_s,
    )
