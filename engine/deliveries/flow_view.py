"""What an endpoint's flow looks like now: for its health, and for the scheduler's gauges."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from engine.db.models import Delivery, Endpoint, EndpointFlow, utcnow
from engine.deliveries.flow import in_flight
from engine.deliveries.states import THROTTLED


def waiting_count(endpoint_id: str) -> int:
    """The endpoint's deliveries waiting as `throttled`."""
    return (
        Delivery.select()
        .where((Delivery.endpoint_id == endpoint_id) & (Delivery.status == THROTTLED))
        .count()
    )


def limited(most: int) -> list[tuple[str, int]]:
    """Endpoints adaptive control limits now, with their limits: the lowest first."""
    rows: Any = (
        EndpointFlow.select(EndpointFlow.endpoint_id, EndpointFlow.concurrency)
        .where(EndpointFlow.concurrency.is_null(False))
        .order_by(EndpointFlow.concurrency, EndpointFlow.endpoint_id)
        .limit(most)
        .tuples()
    )
    return [(endpoint_id, int(concurrency)) for endpoint_id, concurrency in rows]


@dataclass(frozen=True)
class FlowView:
    """What `GET /v1/endpoints/{id}/health` shows of an endpoint's flow."""

    rate_limit_per_s: int | None
    max_in_flight: int | None
    ordering: str
    concurrency_limit: int | None
    concurrency_reason: str | None
    concurrency_changed_at: dt.datetime | None
    paused_until: dt.datetime | None
    pause_reason: str | None
    in_flight: int
    throttled: int


def view(endpoint: Endpoint, now: dt.datetime | None = None) -> FlowView:
    """The endpoint's flow now: its settings, what adaptive control holds, what is in flight."""
    now = now or utcnow()
    row = EndpointFlow.get_or_none(EndpointFlow.endpoint_id == endpoint.id)
    paused = row.paused_until if row is not None else None
    if paused is not None and paused <= now:
        paused = None
    return FlowView(
        rate_limit_per_s=endpoint.rate_limit_per_s,
        max_in_flight=endpoint.max_in_flight,
        ordering=endpoint.ordering,
        concurrency_limit=row.concurrency if row is not None else None,
        concurrency_reason=row.concurrency_reason if row is not None else None,
        concurrency_changed_at=row.concurrency_changed_at if row is not None else None,
        paused_until=paused,
        pause_reason=row.pause_reason if row is not None and paused is not None else None,
        in_flight=in_flight(endpoint.id, now),
        throttled=waiting_count(endpoint.id),
    )
