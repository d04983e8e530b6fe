"""Replay lanes in the scheduler: queue what each lane's rate allows, publish it.

The engine decides (`engine.replays.pacing`); this module gives it the settings,
counts what it did and publishes what it queued. Every `flow_interval_s`, beside
flow control's release. A publish that fails leaves the rows `queued` under a
lease: the scheduler publishes them again once it runs out, as for any lost message.
The slower `sweep` (every scheduler pass) is the safety net: lanes and paused
deliveries left behind by a race, and replays that are done.
"""

from __future__ import annotations

import structlog

from actors import metrics
from actors.broker import Publisher
from engine.replays import pacing, pause, replays
from engine.settings import Settings

log = structlog.get_logger("hookline.pacing")


def pace(settings: Settings, publisher: Publisher) -> int:
    """Queue and publish what the replay lanes let go now; answer how many were published."""
    paced = pacing.pace(lease_s=settings.queue_lease_s, batch=settings.scheduler_batch)
    if not paced:
        return 0
    published = 0
    if paced.at_slot:  # taken with their slots, which the worker waits for
        published += publisher.enqueue_many("deliver", paced.at_slot, released=True)
    if paced.to_flow:  # held for their endpoint's flow control by the claim
        published += publisher.enqueue_many("deliver", paced.to_flow)
    metrics.REPLAY_PACED.inc(published)
    if published < len(paced):
        log.warning("replay_pace_unpublished", unpublished=len(paced) - published)
    return published


def sweep(settings: Settings) -> None:
    """Open forgotten lanes, release orphaned paused deliveries, finish the replays done."""
    rate = settings.replay_rate_per_s
    opened = pacing.mark_orphans(rate)
    adopted = pause.adopt_orphans(rate)
    if opened or adopted:
        log.info("replay_lanes_opened", endpoints=len(opened), resumed=len(adopted))
    for replay_id in replays.finish_done():
        log.info("replay_finished", replay_id=replay_id)
