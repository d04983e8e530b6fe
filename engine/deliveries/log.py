"""The delivery log: a tenant's deliveries and their attempts, as the API reads them.

What the workers write (`engine.deliveries.record`, `engine.deliveries.fanout`) is read here,
always within one tenant.
"""

from __future__ import annotations

from engine.db.models import Attempt, Delivery, Event
from engine.db.pages import Page, paginate
from engine.deliveries.record import envelope
from engine.errors import NotFoundError


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


# Attempts that failed before a request was made: they sent no body.
SENT_NOTHING = frozenset({"transform_error", "secret_unavailable"})


def standard_body(delivery: Delivery) -> str | None:
    """The envelope the delivery's event is sent in, rebuilt byte for byte from the event."""
    event = Event.get_or_none(Event.id == delivery.event_id)
    return None if event is None else envelope(event).decode()


def sent_body(attempt: Attempt, standard: str | None) -> str | None:
    """The body an attempt sent: its transformed body, or the standard one; None if none was.

    Only a transformed body is stored with its attempt (`request_body`); null there
    stands for the event's envelope, `standard`, which `standard_body` rebuilds.
    """
    if attempt.request_body is not None:
        return str(attempt.request_body)
    return None if attempt.error_class in SENT_NOTHING else standard
