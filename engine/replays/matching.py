"""What a replay takes: a tenant's finished deliveries, by endpoint, type, state and time.

One `Selection` serves the dry run (counted) and the replay (moved), so the counts
a dry run answers are the deliveries a replay run at the same moment takes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from engine.db.models import CANCELLED, QUARANTINED, SUCCEEDED, Delivery, Endpoint
from engine.errors import InvalidInputError

# The states a replay may take deliveries from: those that ended.
REPLAYABLE = (QUARANTINED, SUCCEEDED, CANCELLED)


@dataclass(frozen=True)
class Selection:
    """A replay's filters: None for an absent one (every endpoint, every type)."""

    tenant_id: str
    since: dt.datetime
    until: dt.datetime | None
    endpoint_id: str | None = None
    event_types: tuple[str, ...] | None = None
    statuses: tuple[str, ...] = REPLAYABLE

    def check(self) -> Selection:
        """The selection, its window and states checked.

        Raises:
            InvalidInputError: `until` is not later than `since`, or a state cannot be replayed.
        """
        if self.until is not None and self.until <= self.since:
            raise InvalidInputError("until", "must be later than since")
        for status in self.statuses:
            if status not in REPLAYABLE:
                raise InvalidInputError(
                    "statuses", f"{status!r} has not ended; replay takes {', '.join(REPLAYABLE)}"
                )
        return self

    def where(self, status: str | None = None) -> Any:
        """The deliveries selected (in one of the states, or in `status` only)."""
        live = Endpoint.select(Endpoint.id).where(
            (Endpoint.tenant_id == self.tenant_id) & Endpoint.deleted_at.is_null()
        )
        condition = (
            (Delivery.tenant_id == self.tenant_id)
            & (Delivery.event_created_at >= self.since)
            & ~Delivery.test
            & Delivery.endpoint_id.in_(live)
        )
        if self.until is not None:
            condition &= Delivery.event_created_at < self.until
        if self.endpoint_id is not None:
            condition &= Delivery.endpoint_id == self.endpoint_id
        if self.event_types is not None:
            condition &= Delivery.event_type.in_(list(self.event_types))
        if status is not None:
            return condition & (Delivery.status == status)
        return condition & Delivery.status.in_(list(self.statuses))


@dataclass(frozen=True)
class Counts:
    """What a dry run answers: how many, by endpoint and by event type."""

    matched: int
    by_endpoint: dict[str, int]
    by_event_type: dict[str, int]

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, str, int]]) -> Counts:
        """Counts from (endpoint id, event type, n) rows."""
        by_endpoint: dict[str, int] = {}
        by_event_type: dict[str, int] = {}
        for endpoint_id, event_type, n in pairs:
            by_endpoint[endpoint_id] = by_endpoint.get(endpoint_id, 0) + n
            by_event_type[event_type] = by_event_type.get(event_type, 0) + n
        return cls(sum(by_endpoint.values()), by_endpoint, by_event_type)


def count(selection: Selection) -> Counts:
    """How many deliveries the selection takes now, by endpoint and event type."""
    rows: Any = (
        Delivery.select(Delivery.endpoint_id, Delivery.event_type, fn.COUNT(Delivery.id))
        .where(selection.where())
        .group_by(Delivery.endpoint_id, Delivery.event_type)
        .tuples()
    )
    return Counts.of([(e, t, int(n)) for e, t, n in rows])
