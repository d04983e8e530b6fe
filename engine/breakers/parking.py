"""Parked deliveries: held back while an endpoint's breaker is open or it is disabled.

A delivery is parked by the claim (`engine.deliveries.record.claim`) instead of
being attempted, so it spends none of its retries. When the breaker closes,
or the endpoint is enabled with replay, parked deliveries go back to
`scheduled` at a bounded pace (`release_per_s` per endpoint, in one-second
slots of `next_attempt_at`), so a recovering receiver is not stampeded.
"""

from __future__ import annotations

import datetime as dt

from engine.alerts import messages as alerts
from engine.breakers import alerting
from engine.breakers import state as breaker
from engine.breakers import store as health
from engine.breakers.state import CLOSED, Policy
from engine.db.models import Delivery, Endpoint, HealthBucket, db, utcnow
from engine.deliveries import states
from engine.deliveries.states import CANCELLED, PARKED, QUARANTINED, SCHEDULED
from engine.endpoints import states as endpoint_states
from engine.endpoints.crud import get_endpoint
from engine.errors import ConflictError

RELEASE_HORIZON_S = 5.0  # how far ahead each release schedules parked deliveries


def release(
    endpoint_id: str, *, per_s: float, start: dt.datetime, now: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """Schedule the endpoint's oldest parked deliveries, `per_s` a second from `start`.

    Answers how many, and the slot to continue from (None: nothing is left parked).
    """
    step_s = 1.0 if per_s >= 1 else 1.0 / per_s
    per_slot = max(1, round(per_s * step_s))
    slot, released = max(start, now), 0
    while slot < now + dt.timedelta(seconds=RELEASE_HORIZON_S):
        ids = [
            row.id
            for row in Delivery.select(Delivery.id)
            .where((Delivery.endpoint_id == endpoint_id) & (Delivery.status == PARKED))
            .order_by(Delivery.id)
            .limit(per_slot)
        ]
        if not ids:
            return released, None
        released += states.move(
            Delivery.id.in_(ids),
            to=SCHEDULED,
            from_=(PARKED,),
            next_attempt_at=slot,
            lease_until=None,
            updated_at=now,
        )
        slot += dt.timedelta(seconds=step_s)
    return released, slot


def release_one(endpoint_id: str, now: dt.datetime) -> bool:
    """Schedule the oldest parked delivery now, to serve as a half-open breaker's probe."""
    oldest = (
        Delivery.select(Delivery.id)
        .where((Delivery.endpoint_id == endpoint_id) & (Delivery.status == PARKED))
        .order_by(Delivery.id)
        .first()
    )
    if oldest is None:
        return False
    return bool(
        states.move(
            Delivery.id == oldest.id,
            to=SCHEDULED,
            from_=(PARKED,),
            next_attempt_at=now,
            updated_at=now,
        )
    )


def enable(
    tenant_id: str, endpoint_id: str, *, replay: bool, now: dt.datetime | None = None
) -> tuple[Endpoint, int]:
    """Make an endpoint active with a closed breaker; answer it and how many deliveries replay.

    With `replay`, what was parked, and what was quarantined or cancelled
    since the outage began (or since it was disabled), is released at the
    endpoint's pace. Without, parked deliveries are cancelled.

    Raises:
        NotFoundError: no such endpoint for this tenant.
        ConflictError: the endpoint awaits verification; verify it instead.
    """
    now = now or utcnow()
    with db.atomic():
        endpoint = get_endpoint(tenant_id, endpoint_id)
        if endpoint.status == endpoint_states.UNVERIFIED:
            raise ConflictError(f"endpoint {endpoint.id} awaits verification; verify it instead")
        row = health.lock_rows([endpoint.id], now)[endpoint.id]
        state = health.to_breaker(row)
        starts = [d for d in (endpoint.disabled_at, state.outage_started_at) if d is not None]
        was_down = endpoint.status == endpoint_states.DISABLED or state.state != CLOSED
        endpoint_states.enable(endpoint.id, now=now)
        HealthBucket.delete().where(HealthBucket.endpoint_id == endpoint.id).execute()
        count = _replay(endpoint.id, min(starts) if starts else None, now) if replay else 0
        if not replay:
            _cancel_parked(endpoint.id, now)
        row.releasing, row.release_next_at = count > 0, now
        closed = breaker.reset(state)
        health.store(row, closed, Policy(), now)
        endpoint = get_endpoint(tenant_id, endpoint_id)
        if was_down:
            alerting.about(
                endpoint, alerts.RECOVERED, closed, None, None, now, reason="enabled", parked=count
            )
    return endpoint, count


def _replay(endpoint_id: str, since: dt.datetime | None, now: dt.datetime) -> int:
    """Park again what failed since `since`; answer how many are parked in all."""
    if since is not None:
        given_up = ((Delivery.status == QUARANTINED) & (Delivery.quarantined_at >= since)) | (
            (Delivery.status == CANCELLED) & (Delivery.updated_at >= since)
        )
        states.move(
            (Delivery.endpoint_id == endpoint_id) & given_up,
            to=PARKED,
            from_=(QUARANTINED, CANCELLED),
            quarantine_reason=None,
            quarantined_at=None,
            quarantine_published_at=None,
            next_attempt_at=None,
            lease_until=None,
            updated_at=now,
        )
    return health.parked_count(endpoint_id)


def _cancel_parked(endpoint_id: str, now: dt.datetime) -> None:
    states.move(
        Delivery.endpoint_id == endpoint_id,
        to=CANCELLED,
        from_=(PARKED,),
        last_error="endpoint enabled without replay",
        updated_at=now,
    )
