"""The delivery log: a tenant's deliveries and their attempts, as the API reads them.

What the workers write (`engine.deliveries.record`, `engine.deliveries.fanout`) is read here,
always within one tenant.
"""

from __future__ import annotations

from engine.db.models import Attempt, Delivery
from engine.db.pages import Page, paginate
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
