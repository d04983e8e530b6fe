"""Pause: an endpoint's owner holds its deliveries back, and later lets them go, paced.

While an endpoint is paused (`paused_at`), fan-out creates its deliveries `paused`,
and a claim that meets one of its deliveries (a retry come due, a message already
published, a release of its flow) moves it to `paused`: nothing is attempted, so
nothing fails, trips its breaker or raises an alert, and nothing ages. `resume`
hands every paused delivery to the endpoint's replay lane (`engine.replays.pacing`),
which sends them in event order at the replay rate (or the endpoint's throttle, if
slower); a FIFO endpoint's order holds, because a paused delivery is open and so
may still be its head. Pause is not `disabled`: that is the breaker's and a 410's
call, and parks deliveries; pause is the owner's and can be lifted only by them.
"""

from __future__ import annotations

import datetime as dt

from engine.db.models import PAUSED, Delivery, Endpoint, db, utcnow
from engine.deliveries import flow
from engine.deliveries import states as delivery_states
from engine.endpoints import crud as endpoints
from engine.replays import pacing


def pause(tenant_id: str, endpoint_id: str) -> Endpoint:
    """Pause a live endpoint (a paused one stays paused since it was); answer it.

    Raises:
        NotFoundError: no such endpoint of this tenant.
    """
    endpoint = endpoints.get_endpoint(tenant_id, endpoint_id)
    now = utcnow()
    Endpoint.update(paused_at=now, updated_at=now).where(
        (Endpoint.id == endpoint.id) & Endpoint.paused_at.is_null()
    ).execute()
    return Endpoint.get_by_id(endpoint.id)


def resume(tenant_id: str, endpoint_id: str, *, rate_per_s: int) -> tuple[Endpoint, int]:
    """Lift an endpoint's pause; answer it and how many paused deliveries go to its lane.

    Raises:
        NotFoundError: no such endpoint of this tenant.
    """
    endpoint = endpoints.get_endpoint(tenant_id, endpoint_id)
    now = utcnow()
    with db.atomic():
        Endpoint.update(paused_at=None, updated_at=now).where(Endpoint.id == endpoint.id).execute()
        released = release_paused([endpoint.id], rate_per_s, now)
    return Endpoint.get_by_id(endpoint.id), released


def release_paused(endpoint_ids: list[str], rate_per_s: int, now: dt.datetime) -> int:
    """Hand these endpoints' paused deliveries to their lanes; answer how many."""
    moved = delivery_states.move(
        Delivery.endpoint_id.in_(endpoint_ids) & (Delivery.status == PAUSED),
        to=delivery_states.SCHEDULED,
        from_=(PAUSED,),
        next_attempt_at=None,
        lease_until=None,
        restarted_at=now,
        updated_at=now,
    )
    if moved:
        pacing.open_lanes(endpoint_ids, rate_per_s, now)
    return moved


def adopt_orphans(rate_per_s: int, now: dt.datetime | None = None) -> list[str]:
    """Release the paused deliveries of endpoints no longer paused; answer those endpoints.

    The scheduler's safety net: a fan-out that read the endpoint paused may commit its
    `paused` deliveries just after a resume moved the others.
    """
    now = now or utcnow()
    found = flow.endpoints_with("d.status = 'paused'", Delivery.status == PAUSED)
    if not found:
        return []
    resumed = [
        row.id
        for row in Endpoint.select(Endpoint.id).where(
            Endpoint.id.in_(found) & Endpoint.paused_at.is_null()
        )
    ]
    if resumed:
        with db.atomic():
            release_paused(resumed, rate_per_s, now)
    return resumed
