"""The `fan_out(event_ids)` actor on `hookline.fan_out`: an event's deliveries, created.

The first deliveries are claimed and sent by this worker at once; the rest
are published as `deliver` messages.
"""

from __future__ import annotations

import structlog

from actors import requests
from actors.pipeline import Batch
from actors.runtime import Runtime
from engine.deliveries import fanout

log = structlog.get_logger("hookline.delivery")

QUEUE_NAME = "hookline.fan_out"
# A fan-out claims (and sends itself) at most this many `deliver_batch`es in all.
FAN_OUT_CLAIM = 4


def fan_out(rt: Runtime, event_ids: str | list[str]) -> None:
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
    settings = rt.settings
    pipeline = requests.pipeline_of(rt)
    started: list[Batch] = []
    built: list[requests.Work] = []

    def send_now(plan: fanout.FanOut) -> None:
        # Writing the deliveries and committing them (three round trips, one a WAL flush)
        # was the longest step between an event's fan-out and its first attempt under
        # load: the attempts start before it, and their answers are recorded only once
        # the commit succeeded (see `Pipeline.start_held`).
        if plan.claimed:
            built.append(requests.build(rt, plan.claimed))
            batch = pipeline.start_held(requests.event_loop(rt), requests.sender(rt), built[0])
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
    else:
        requests.attempt(rt, plan.claimed, built[0] if built else None)
