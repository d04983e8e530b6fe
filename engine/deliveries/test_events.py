"""Test events: one event, sent to one endpoint, through the real delivery pipeline.

`POST /v1/endpoints/{id}/test` stores an event marked `test` and its one
delivery in one transaction; the caller publishes `deliver` once it is
committed (or the delivery's lease has the scheduler do it). From there the
delivery is claimed, built, signed, sent and recorded as any other, retries
and quarantine included. A test event is never fanned out: the trigger gives
it no `event_fan_out` row (migration 10), so the tenant's other endpoints
never see it. Its attempts are left out of the breaker and of the metrics of
real traffic (`actors.outcomes.report_attempt`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from engine.db.connect import insert_rows
from engine.db.models import Delivery, Event, db, utcnow
from engine.deliveries import states
from engine.deliveries.fanout import compiled_filter
from engine.deliveries.states import PENDING
from engine.endpoints import crud as endpoints
from engine.endpoints import payload_filter
from engine.endpoints import states as endpoint_states
from engine.errors import ConflictError, InvalidInputError
from engine.events.catalog import first_example
from engine.events.ingest import encode_payload
from engine.events.types import EVENT_TYPE_PATTERN, is_valid_event_type
from engine.ids import id_timestamp_ms, new_id

# The event type of a test whose caller names none.
DEFAULT_TEST_TYPE = "webhook.test"

CREATED = states.initial(PENDING)


@dataclass(frozen=True)
class TestSend:
    """What a test stored: its event and the one delivery to publish."""

    event: Event
    delivery: Delivery


def send_test(
    tenant_id: str,
    endpoint_id: str,
    event_type: str | None,
    data: Any,
    *,
    lease_s: float,
    now: dt.datetime | None = None,
) -> TestSend:
    """Store a test event for one endpoint and its delivery, `pending`, leased `lease_s`.

    `data` None means the first example the tenant's catalog holds for the type, or
    `{}`; it is not checked against the type's schema (a test may show what a receiver
    does with any payload). The endpoint's payload filter applies as at fan-out; its
    event-type subscription does not (a `webhook.test` reaches any endpoint).

    Raises:
        NotFoundError: no such endpoint for this tenant.
        ConflictError: the endpoint is not active (unverified or disabled): its
            delivery would be cancelled or parked, never sent.
        InvalidInputError: the event type is malformed (`event_type`), or the
            endpoint's filter lets this event through to no one (`data`).
    """
    event_type = DEFAULT_TEST_TYPE if event_type is None else event_type
    if not is_valid_event_type(event_type):
        raise InvalidInputError("event_type", f"must match {EVENT_TYPE_PATTERN}")
    now = now or utcnow()
    with db.atomic():
        if data is None:
            example = first_example(tenant_id, event_type)
            data = example if isinstance(example, dict) else {}
        payload = encode_payload(data)
        endpoint = endpoints.get_endpoint(tenant_id, endpoint_id)
        if endpoint.status != endpoint_states.ACTIVE:
            raise ConflictError(
                f"endpoint {endpoint_id} is {endpoint.status}: a test is sent only to an active "
                "endpoint (verify or enable it first)"
            )
        accepts = compiled_filter(endpoint)
        if accepts is not None and not accepts(payload_filter.document(event_type, data)):
            raise InvalidInputError(
                "data",
                "the endpoint's filter does not match this event, so it would get no delivery: "
                "send data (and an event_type) that it matches",
            )
        event_id = new_id("evt")
        event = {
            "id": event_id,
            "tenant_id": tenant_id,
            "event_type": event_type,
            "payload": payload,
            "idempotency_key": None,
            "created_at": now,
            "fan_out_lease_until": None,
            "test": True,
        }
        delivery = {
            "id": new_id("dlv", now_ms=id_timestamp_ms(event_id)),
            "tenant_id": tenant_id,
            "event_id": event["id"],
            "endpoint_id": endpoint.id,
            "event_type": event_type,
            "status": CREATED,
            "attempts": 0,
            "lease_until": now + dt.timedelta(seconds=lease_s),
            "event_created_at": now,
            "created_at": now,
            "updated_at": now,
            "test": True,
        }
        insert_rows(Event, [event])
        insert_rows(Delivery, [delivery])
    return TestSend(Event(**event), Delivery(**delivery))
