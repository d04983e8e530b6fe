"""Deliveries: one event to one endpoint, from fan-out to its last attempt.

Every state change is a conditional update, so duplicate messages, crashed
workers and late answers can never move a delivery backwards.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from peewee import JOIN

from engine import alert_records, alerts, endpoint_secrets, health, signing
from engine.delivery import Outcome, Request
from engine.errors import NotFoundError
from engine.filters import matches
from engine.ids import new_id
from engine.models import (
    CANCELLED,
    DELIVERING,
    ENDPOINT_ACTIVE,
    ENDPOINT_DISABLED,
    PARKED,
    PENDING,
    QUARANTINED,
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    Attempt,
    Delivery,
    Endpoint,
    EndpointHealth,
    Event,
    db,
    utcnow,
)
from engine.pages import Page, paginate
from engine.retry import Decision, decide
from engine.secretbox import SecretBox


def fan_out(event_id: str, *, lease_s: float = 30.0, now: dt.datetime | None = None) -> list[str]:
    """Create one delivery per matching endpoint; answer the ids still to publish.

    The new rows wait `lease_s` for the caller to publish them before the
    scheduler does. Safe to repeat: existing (event, endpoint) pairs are kept.
    """
    now = now or utcnow()
    lease_until = now + dt.timedelta(seconds=lease_s)
    with db.atomic():
        event = Event.get_or_none(Event.id == event_id)
        if event is None:
            return []
        if event.fanned_out_at is None:
            endpoints = Endpoint.select(Endpoint.id, Endpoint.event_types).where(
                (Endpoint.tenant_id == event.tenant_id)
                & (Endpoint.status == ENDPOINT_ACTIVE)
                & Endpoint.deleted_at.is_null()
            )
            rows = [
                _new_delivery(event, endpoint.id, now, lease_until)
                for endpoint in endpoints
                if matches(event.event_type, endpoint.event_types)
            ]
            if rows:
                Delivery.insert_many(rows).on_conflict_ignore().execute()
            Event.update(fanned_out_at=now, fan_out_lease_until=None).where(
                Event.id == event.id
            ).execute()
        pending = Delivery.select(Delivery.id).where(
            (Delivery.event_id == event.id) & (Delivery.status == PENDING)
        )
        return [row.id for row in pending]


def _new_delivery(
    event: Event, endpoint_id: str, now: dt.datetime, lease_until: dt.datetime
) -> dict[str, object]:
    return {
        "id": new_id("dlv"),
        "tenant_id": event.tenant_id,
        "event_id": event.id,
        "endpoint_id": endpoint_id,
        "event_type": event.event_type,
        "status": PENDING,
        "attempts": 0,
        "lease_until": lease_until,
        "event_created_at": event.created_at,
        "created_at": now,
        "updated_at": now,
    }


def mark_queued(delivery_ids: Sequence[str], *, lease_s: float) -> None:
    """Record that these pending deliveries were published and may wait `lease_s`."""
    if not delivery_ids:
        return
    now = utcnow()
    Delivery.update(
        status=QUEUED, lease_until=now + dt.timedelta(seconds=lease_s), updated_at=now
    ).where(Delivery.id.in_(list(delivery_ids)) & (Delivery.status == PENDING)).execute()


@dataclass(frozen=True)
class Claim:
    """A delivery a worker now holds, with what it needs to make the attempt."""

    delivery: Delivery
    endpoint: Endpoint
    event: Event


def claim(delivery_id: str, *, lease_s: float) -> Claim | None:
    """Take a delivery for one attempt, or None if it is not ours to attempt now.

    `lease_s` must outlive the attempt: once it passes, the scheduler hands the
    delivery to another worker. A delivery whose endpoint was deleted (or
    awaits verification) is cancelled. One whose endpoint is disabled, or
    whose breaker is open, is parked without spending an attempt, so that the
    breaker closing or `enable` with replay can release it (cancelling would
    lose it); a half-open breaker lets exactly one probe through.
    """
    now = utcnow()
    claimable = Delivery.status.in_((PENDING, QUEUED)) | (
        (Delivery.status == DELIVERING) & (Delivery.lease_until < now)
    )
    # One round trip for the delivery, its endpoint, its event and the breaker's state.
    delivery = (
        Delivery.select(Delivery, Endpoint, Event, EndpointHealth.state)
        .join(Endpoint, on=(Endpoint.id == Delivery.endpoint_id), attr="endpoint_row")
        .switch(Delivery)
        .join(Event, on=(Event.id == Delivery.event_id), attr="event_row")
        .switch(Delivery)
        .join(
            EndpointHealth,
            JOIN.LEFT_OUTER,
            on=(EndpointHealth.endpoint_id == Delivery.endpoint_id),
            attr="health_row",
        )
        .where((Delivery.id == delivery_id) & claimable)
        .first()
    )
    if delivery is None:
        return None
    endpoint, event = delivery.endpoint_row, delivery.event_row
    health_row = getattr(delivery, "health_row", None)
    mine = (Delivery.id == delivery_id) & claimable & (Delivery.attempts == delivery.attempts)
    if endpoint.deleted_at is not None or endpoint.status not in (
        ENDPOINT_ACTIVE,
        ENDPOINT_DISABLED,
    ):
        reason = endpoint.disabled_reason or "endpoint is not active"
        Delivery.update(
            status=CANCELLED, lease_until=None, last_error=reason, updated_at=now
        ).where(mine).execute()
        return None
    state = getattr(health_row, "state", None)
    if endpoint.status == ENDPOINT_DISABLED or not health.admit(
        endpoint.id, delivery_id, state, now=now
    ):
        Delivery.update(
            status=PARKED, lease_until=None, next_attempt_at=None, updated_at=now
        ).where(mine).execute()
        return None
    lease_until = now + dt.timedelta(seconds=lease_s)
    changes = {"status": DELIVERING, "attempts": delivery.attempts + 1, "lease_until": lease_until}
    if not Delivery.update(updated_at=now, **changes).where(mine).execute():
        if state not in (None, "closed"):
            health.give_back_probe(endpoint.id, delivery_id)
        return None
    for name, value in changes.items():
        setattr(delivery, name, value)
    return Claim(delivery, endpoint, event)


def build_request(claimed: Claim, *, user_agent: str, timestamp: int, box: SecretBox) -> Request:
    """The signed POST for a claimed delivery (Standard Webhooks headers).

    Every live secret signs: during a rotation's grace period, the old one too.

    Raises:
        CryptoError: the endpoint's secret does not decrypt with the configured keys.
    """
    event = claimed.event
    sent_at = event.created_at.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    # The payload is stored as compact JSON text; the envelope is joined around it as is.
    body = (
        f'{{"type":{json.dumps(event.event_type)},"timestamp":"{sent_at}",'
        f'"data":{event.payload}}}'.encode()
    )
    headers = dict(claimed.endpoint.headers or {})
    signers = endpoint_secrets.signing_secrets(claimed.endpoint, box)
    headers.update(signing.webhook_headers(signers, event.id, timestamp, body))
    headers["content-type"] = "application/json"
    headers["user-agent"] = user_agent
    return Request(url=claimed.endpoint.url, headers=headers, body=body)


def record(
    claimed: Claim,
    outcome: Outcome,
    *,
    schedule: Sequence[float],
    max_age_s: float,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """Store the attempt and the delivery's next state in one transaction."""
    delivery = claimed.delivery
    number = delivery.attempts
    now = utcnow()
    decision = decide(
        success=outcome.success,
        status_code=outcome.status_code,
        attempts_made=number,
        schedule=claimed.endpoint.retry_schedule or schedule,
        first_attempt_at=delivery.event_created_at,
        now=now,
        max_age_s=max_age_s,
        retry_after_s=outcome.retry_after_s,
        rand=rand,
    )
    changes: dict[object, object] = {
        Delivery.lease_until: None,
        Delivery.last_attempt_at: outcome.started_at,
        Delivery.last_status_code: outcome.status_code,
        Delivery.last_error: outcome.error_detail,
        Delivery.updated_at: now,
        Delivery.next_attempt_at: None,
    }
    if decision.action == "succeed":
        changes[Delivery.status] = SUCCEEDED
    elif decision.action == "retry":
        changes[Delivery.status] = SCHEDULED
        changes[Delivery.next_attempt_at] = now + dt.timedelta(seconds=decision.delay_s or 0)
    else:
        changes[Delivery.status] = QUARANTINED
        changes[Delivery.quarantine_reason] = decision.reason
        changes[Delivery.quarantined_at] = now
    with db.atomic():
        Attempt.insert(_attempt_row(claimed, number, outcome)).on_conflict_ignore().execute()
        Delivery.update(changes).where(
            (Delivery.id == delivery.id)
            & (Delivery.status == DELIVERING)
            & (Delivery.attempts == number)
        ).execute()
        if decision.action == "disable":
            _disable_gone(claimed, decision.reason or "endpoint answered 410 Gone", now)
    return decision


def _disable_gone(claimed: Claim, reason: str, now: dt.datetime) -> None:
    """Disable the endpoint that answered 410 Gone, and emit `endpoint.disabled` once."""
    endpoint = claimed.endpoint
    disabled = (
        Endpoint.update(
            status=ENDPOINT_DISABLED, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        .where((Endpoint.id == endpoint.id) & (Endpoint.status == ENDPOINT_ACTIVE))
        .execute()
    )
    if disabled:
        row = EndpointHealth.get_or_none(EndpointHealth.endpoint_id == endpoint.id)
        alert_records.about(
            endpoint,
            alerts.DISABLED,
            health.to_breaker(row),
            None,
            None,
            now,
            dedup=f"gone:{claimed.delivery.id}",
            reason=reason,
        )


def _attempt_row(claimed: Claim, number: int, outcome: Outcome) -> dict[str, object]:
    return {
        "id": new_id("att"),
        "tenant_id": claimed.delivery.tenant_id,
        "delivery_id": claimed.delivery.id,
        "number": number,
        "started_at": outcome.started_at,
        "duration_ms": round(outcome.duration_ms, 3),
        "status_code": outcome.status_code,
        "outcome": "success" if outcome.success else "failure",
        "error_class": outcome.error_class,
        "error_detail": outcome.error_detail,
        "response_body": outcome.response_body,
        "response_body_truncated": outcome.response_body_truncated,
    }


def get_delivery(tenant_id: str, delivery_id: str) -> Delivery:
    """One delivery of the tenant.

    Raises:
        NotFoundError: no such delivery for this tenant.
    """
    row = Delivery.get_or_none((Delivery.id == delivery_id) & (Delivery.tenant_id == tenant_id))
    if row is None:
        raise NotFoundError("delivery", delivery_id)
    return row


def list_deliveries(
    tenant_id: str,
    *,
    limit: int,
    cursor: str | None,
    event_id: str | None = None,
    endpoint_id: str | None = None,
    status: str | None = None,
) -> Page:
    """The tenant's deliveries, newest first, filtered."""
    query = Delivery.select().where(Delivery.tenant_id == tenant_id)
    if event_id:
        query = query.where(Delivery.event_id == event_id)
    if endpoint_id:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(Delivery.status == status)
    return paginate(query, Delivery.id, limit=limit, cursor=cursor)


def list_attempts(tenant_id: str, delivery_id: str, *, limit: int, cursor: str | None) -> Page:
    """A delivery's attempts, newest first.

    Raises:
        NotFoundError: no such delivery for this tenant.
    """
    delivery = get_delivery(tenant_id, delivery_id)
    query = Attempt.select().where(Attempt.delivery_id == delivery.id)
    return paginate(query, Attempt.id, limit=limit, cursor=cursor)
