"""Backfill: past events an endpoint's subscription matches that it never received.

An event counts as never received by an endpoint when it has no delivery to it,
or only one cancelled before any attempt (the endpoint was unverified, or a
backfill was cancelled). Events sent while it was disabled or paused (deliveries
never made), or before it existed, are found so. The match is the fan-out's: its
event types, then its payload filter (`engine.deliveries.fanout`). Events still
waiting for their fan-out are left to it, so the two never make the same delivery.

A backfill is a replay (`kind: "backfill"`): its deliveries are created, or the
cancelled ones moved, `scheduled` without a time, in its endpoint's lane.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from peewee import JOIN

from engine.db.connect import insert_rows, is_postgres
from engine.db.models import CANCELLED, Delivery, Endpoint, Event, EventFanOut, db, utcnow
from engine.deliveries import states as delivery_states
from engine.deliveries.fanout import compiled_filter, new_delivery
from engine.endpoints import payload_filter
from engine.endpoints.filters import matches
from engine.ids import floor_id
from engine.replays import replays
from engine.replays.matching import Counts, Selection

# Events read per round trip while looking for the missing ones.
BATCH = 1000

CREATED_WAITING = delivery_states.initial(delivery_states.SCHEDULED)


@dataclass(frozen=True)
class Missing:
    """An event the endpoint never received, and its cancelled delivery if it has one."""

    event: Event
    cancelled_id: str | None


def missing(endpoint: Endpoint, since: dt.datetime, until: dt.datetime | None) -> Iterator[Missing]:
    """The events in [since, until) the endpoint's subscription matches and it never got."""
    accepts = compiled_filter(endpoint)
    # An event's id and `created_at` are made together at ingest: ids from a second before
    # `since` on cover the window, and the scan skips the tenant's older history.
    start_ms = int(since.replace(tzinfo=dt.UTC).timestamp() * 1000) - 1000
    after = floor_id("evt", max(0, start_ms))
    while True:
        rows = list(_candidates(endpoint, since, until, after))
        for event in rows:
            if not matches(event.event_type, endpoint.event_types or []):
                continue
            if accepts is not None:
                document = payload_filter.document(event.event_type, json.loads(event.payload))
                if not accepts(document):
                    continue
            yield Missing(event, getattr(event, "cancelled_id", None))
        if len(rows) < BATCH:
            return
        after = rows[-1].id


def _candidates(
    endpoint: Endpoint, since: dt.datetime, until: dt.datetime | None, after: str
) -> Any:
    """The next events of the window (by id) with no delivery to the endpoint, or a cancelled
    one never attempted, and no fan-out pending."""
    theirs = Delivery.alias("theirs")
    condition = (
        (Event.tenant_id == endpoint.tenant_id)
        & (Event.created_at >= since)
        & ~Event.test
        & (Event.id > after)
        & EventFanOut.event_id.is_null()
        & (theirs.id.is_null() | ((theirs.status == CANCELLED) & (theirs.attempts == 0)))
    )
    if until is not None:
        condition &= Event.created_at < until
    return (
        Event.select(Event, theirs.id.alias("cancelled_id"))
        .join(EventFanOut, JOIN.LEFT_OUTER, on=(EventFanOut.event_id == Event.id))
        .switch(Event)
        .join(
            theirs,
            JOIN.LEFT_OUTER,
            on=((theirs.event_id == Event.id) & (theirs.endpoint_id == endpoint.id)),
        )
        .where(condition)
        .order_by(Event.id)
        .limit(BATCH)
        .objects()
    )


def count(endpoint: Endpoint, since: dt.datetime, until: dt.datetime | None) -> Counts:
    """What a backfill would send now: by event type (one endpoint)."""
    return Counts.of(
        [(endpoint.id, m.event.event_type, 1) for m in missing(endpoint, since, until)]
    )


def start(
    endpoint: Endpoint, since: dt.datetime, until: dt.datetime | None, *, rate_per_s: int
) -> Any:
    """Create (or move back) the endpoint's missing deliveries, paced; answer the replay.

    Raises:
        InvalidInputError: `until` is not later than `since`.
    """
    selection = Selection(endpoint.tenant_id, since, until, endpoint.id, None, ()).check()
    now = utcnow()
    with db.atomic():
        # Two backfills of one endpoint take turns: the partitioned `delivery` table cannot
        # hold (event_id, endpoint_id) unique (migration 15), so nothing else would stop both
        # inserting the same missing delivery.
        if is_postgres(db.obj):
            Endpoint.select(Endpoint.id).where(Endpoint.id == endpoint.id).for_update().execute()
        replay = replays.new_replay(selection, replays.BACKFILL, rate_per_s, now)
        created, reopened = [], []
        for found in missing(endpoint, since, until):
            if found.cancelled_id is not None:
                reopened.append(found.cancelled_id)
            else:
                created.append(_row(found.event, endpoint.id, replay.id, now))
        matched = 0
        for start_at in range(0, len(created), BATCH):
            batch = created[start_at : start_at + BATCH]
            matched += insert_rows(Delivery, batch, skip_conflicts=True)
        for start_at in range(0, len(reopened), BATCH):
            matched += delivery_states.move(
                Delivery.id.in_(reopened[start_at : start_at + BATCH]),
                to=delivery_states.SCHEDULED,
                from_=(CANCELLED,),
                **replays.back_in_play(replay.id, CANCELLED, now),
            )
        return replays.opened(replay, matched, now)


def _row(event: Event, endpoint_id: str, replay_id: str, now: dt.datetime) -> dict[str, Any]:
    """A new delivery waiting in the endpoint's lane, as the backfill's."""
    row = new_delivery(event, endpoint_id, now, None, CREATED_WAITING, 0)
    return {**row, "replay_id": replay_id, "restarted_at": now, "restart_attempts": 0}
