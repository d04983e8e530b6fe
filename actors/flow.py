"""Flow control in the processes: learn from answers, release waiting deliveries, publish.

The engine decides (`engine.deliveries.flow`, `engine.deliveries.adaptive`); this
module gives it the settings, counts what it did, and publishes what it released.
A worker releases an endpoint's waiting deliveries as soon as it recorded one of its
attempts (an in-flight slot or a FIFO turn just freed); the scheduler's pass every
`flow_interval_s` releases what time frees (slots, the end of a pause). A publish
that fails leaves the released rows `queued` under a lease: the scheduler publishes
them again once it runs out, as it does for any lost message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from actors import metrics
from actors.broker import Publisher
from engine.deliveries import adaptive, flow, slots
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.replays import pacing
from engine.retry import Decision
from engine.settings import Settings

log = structlog.get_logger("hookline.flow")

# What a delivery whose slot passed unsent "decides": it waits for its flow again, unattempted.
GIVEN_BACK = Decision("retry", 0.0, reason=slots.MISSED)


def release(
    settings: Settings, publisher: Publisher, endpoint_ids: Sequence[str] | None, *, by: str
) -> int:
    """Release waiting deliveries (of these endpoints, or of any) and publish them.

    Answers how many were published. Call it with a database connection open.
    """
    released = flow.release(
        endpoint_ids,
        lease_s=settings.queue_lease_s,
        batch=settings.scheduler_batch,
    )
    if not released:
        return 0
    published = publisher.enqueue_many("deliver", released, released=True)
    metrics.FLOW_RELEASED.labels(by).inc(published)
    if published < len(released):
        log.warning("flow_release_unpublished", unpublished=len(released) - published)
    return published


def learn(
    settings: Settings, attempts: Sequence[tuple[deliveries.Claim, Outcome]], now: dt.datetime
) -> None:
    """What the answers teach the endpoints' flow (in the recording transaction)."""
    changes = adaptive.observe(
        attempts,
        now=now,
        ceiling=settings.adaptive_ceiling,
        fast_s=settings.adaptive_fast_s,
        in_flight=lambda endpoint_id: flow.in_flight(endpoint_id, now),
    )
    for change in changes:
        metrics.CONCURRENCY_CHANGES.labels(change.reason.split(" ", 1)[0]).inc()
        log.info(
            "endpoint_concurrency_changed",
            endpoint_id=change.endpoint_id,
            concurrency=change.concurrency,
            reason=change.reason,
        )


class FlowRecorder:
    """The recorder's `record`: attempts recorded with what they teach, then releases.

    `decide` is the delivery policy's. After the recording commits, the endpoints
    under flow control whose attempts were recorded release what waits for them.
    """

    def __init__(self, settings: Settings, publisher: Publisher, decide: Any) -> None:
        self.settings = settings
        self.publisher = publisher
        self.decide = decide

    def __call__(self, attempts: Sequence[tuple[deliveries.Claim, Outcome]]) -> list[Decision]:
        made = [(c, o) for c, o in attempts if o.error_class != slots.MISSED]
        missed = [c for c, o in attempts if o.error_class == slots.MISSED]
        decisions = iter(deliveries.record_many(made, decide=self.decide, learn=self._learn))
        if missed:
            self._give_back(missed)
        self.after(claimed for claimed, _outcome in attempts)
        return [
            GIVEN_BACK if o.error_class == slots.MISSED else next(decisions) for _c, o in attempts
        ]

    def _give_back(self, missed: Sequence[deliveries.Claim]) -> None:
        """Those whose slot passed unsent wait for a new one: from their endpoint's flow, or
        (an endpoint without flow control: a replay lane's slot) from their lane."""
        for kind, claims in (
            ("flow", [c for c in missed if c.flow is not None]),
            ("replay", [c for c in missed if c.flow is None]),
        ):
            if not claims:
                continue
            rows = [(c.delivery.id, c.endpoint.id, c.delivery.lease_until) for c in claims]
            if kind == "flow":
                given = flow.give_back(rows)
            else:
                given = pacing.give_back(rows, self.settings.replay_rate_per_s)
            metrics.FLOW_SLOTS_MISSED.labels(kind).inc(given)
            log.info(
                "slots_missed",
                by=kind,
                deliveries=given,
                endpoint_ids=sorted({c.endpoint.id for c in claims}),
            )

    def _learn(
        self, attempts: Sequence[tuple[deliveries.Claim, Outcome]], now: dt.datetime
    ) -> None:
        learn(self.settings, attempts, now)

    def after(self, claims: Iterable[deliveries.Claim]) -> None:
        """Release the waiting deliveries of these claims' endpoints under flow control."""
        endpoints = sorted({c.endpoint.id for c in claims if c.flow is not None})
        if not endpoints:
            return
        try:
            release(self.settings, self.publisher, endpoints, by="worker")
        except Exception:  # recorded already: the scheduler's pass releases them
            log.warning("flow_release_failed", endpoints=len(endpoints), exc_info=True)
