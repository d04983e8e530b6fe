"""FIFO endpoints: whose turn it is.

An endpoint with `ordering: "fifo"` sends its deliveries one at a time in event order:
the event's `created_at`, then its time-sorted id. `turn` answers the head (its oldest
open delivery) and whether it must still wait for an older event's fan-out;
`engine.deliveries.flow` releases it when nothing else of the endpoint is in flight.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.db.models import Delivery, Event, EventFanOut
from engine.deliveries.states import OPEN_STATES, THROTTLED

# The open states other than `throttled`: a FIFO endpoint's head may be in any of them.
ACTIVE = tuple(s for s in OPEN_STATES if s != THROTTLED)


def order_key(delivery: Any) -> tuple[dt.datetime, str]:
    """Where a delivery stands in its endpoint's order."""
    return (delivery.event_created_at, delivery.event_id)


def head_of(endpoint_id: str) -> Any | None:
    """A FIFO endpoint's oldest open delivery: the one whose turn it is.

    Two reads, each a short index scan: the oldest of the few open rows not waiting,
    and the first waiting row in `delivery_throttled`'s order.
    """
    order = (Delivery.event_created_at, Delivery.event_id)
    found = []
    for condition in (Delivery.status.in_(ACTIVE), Delivery.status == THROTTLED):
        row = (
            Delivery.select(
                Delivery.id,
                Delivery.status,
                Delivery.tenant_id,
                Delivery.event_created_at,
                Delivery.event_id,
            )
            .where((Delivery.endpoint_id == endpoint_id) & condition)
            .order_by(*order)
            .first()
        )
        if row is not None:
            found.append(row)
    return min(found, key=order_key) if found else None


def turn(endpoint_id: str) -> tuple[Any | None, bool]:
    """A FIFO endpoint's head, and whether an older event of its tenant awaits fan-out.

    Events are fanned out concurrently, so a later event's delivery may exist before an
    earlier one's: the head may go only once no older event awaits its fan-out. The
    pending fan-outs are read first: one that commits after that read committed its
    deliveries before the head is read, so either way the head read is the true oldest.
    """
    pending_since = _oldest_unfanned_by_tenant()
    head = head_of(endpoint_id)
    if head is None:
        return None, False
    oldest = pending_since.get(head.tenant_id)
    return head, oldest is not None and oldest < order_key(head)


def _oldest_unfanned_by_tenant() -> dict[str, tuple[dt.datetime, str]]:
    """Each tenant's oldest event whose fan-out has not committed yet."""
    rows: Any = (
        Event.select(Event.tenant_id, Event.created_at, Event.id)
        .join(EventFanOut, on=(EventFanOut.event_id == Event.id))
        .tuples()
    )
    oldest: dict[str, tuple[dt.datetime, str]] = {}
    for tenant_id, created_at, event_id in rows:
        key = (created_at, event_id)
        if tenant_id not in oldest or key < oldest[tenant_id]:
            oldest[tenant_id] = key
    return oldest
