"""The `fan_out(event_ids)` actor on `hookline.fan_out`: an event's deliveries, created.

The first deliveries are claimed and sent by this worker at once; the rest
are published as `deliver` messages.
"""

from __future__ import annotations

import contextlib

import structlog
from dramatiq.middleware import CurrentMessage

from actors import flow, requests
from actors.early_attempts import EarlyAttempts
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
    no `deliver` message at all. Their attempts start once the deliveries are
    committed, or, with `early_first_attempts`, inside the transaction
    (`actors.early_attempts`). The rest go out `deliver_batch` ids per message.
    """
    ids = [event_ids] if isinstance(event_ids, str) else list(event_ids)
    # A message RabbitMQ gives again lost its last worker, maybe inside the transaction, to
    # an early attempt: commit first this time, so a poison delivery dies in `deliver`,
    # where its lost claims are counted (`engine.deliveries.lost`), not here, uncounted.
    redelivered = getattr(CurrentMessage.get_current_message(), "redelivered", False)
    early = EarlyAttempts(rt) if rt.settings.early_first_attempts and not redelivered else None
    plan = _create(rt, ids, early)
    started = early.batch if early is not None else None
    if early is not None and early.kept is not None:
        claimed = early.kept  # those over their host's share were given back at the commit
    else:
        claimed = requests.keep_fair(rt, plan.claimed)
    if started is None:
        # Wait for room now, as `deliver` does; a wait here is shorter than the claims'
        # lease, since room frees as attempts end.
        requests.pipeline_of(rt).reserve(len(claimed))
    published = _publish(rt, plan.pending)
    if plan.throttled:  # their flow decides when; offer what it allows now
        with rt.database.connection_context():
            published += flow.release(rt.settings, rt.publisher, plan.throttled, by="fan_out")
    if plan.claimed or plan.pending:
        log.info(
            "event_fanned_out",
            event_ids=ids,
            deliveries=len(plan.claimed) + len(plan.pending),
            sent_here=len(claimed),
            held_back=len(plan.claimed) - len(claimed),
            published=published,
        )
    if started is not None:
        requests.pipeline_of(rt).wait(started)
    else:
        requests.attempt(rt, claimed, early.work if early is not None else None)


def _create(rt: Runtime, ids: list[str], early: EarlyAttempts | None) -> fanout.FanOut:
    """Create and commit the events' deliveries, the first ones claimed for this worker."""
    settings = rt.settings
    with early.committing() if early is not None else contextlib.nullcontext():
        with rt.database.connection_context():
            return fanout.fan_out_and_claim(
                ids,
                lease_s=settings.fan_out_lease_s,
                claim=settings.deliver_batch * min(len(ids), FAN_OUT_CLAIM),
                claim_lease_s=settings.request_timeout_s + settings.lease_grace_s,
                before_writing=early.before_writing if early is not None else None,
                settle=early.settle if early is not None else None,
                memo=rt.endpoints,
            )


def _publish(rt: Runtime, pending: list[str]) -> int:
    """Publish the deliveries this worker does not send; answer how many were confirmed."""
    if not pending:
        return 0
    published = rt.publisher.enqueue_many("deliver", pending)
    with rt.database.connection_context():
        fanout.mark_queued(pending[:published], lease_s=rt.settings.queue_lease_s)
    return published
