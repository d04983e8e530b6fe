"""Endpoints: where a tenant's events go, and which ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import signing
from engine.errors import InvalidInputError, NotFoundError
from engine.filters import is_valid_pattern
from engine.ids import new_id
from engine.models import (
    CANCELLED,
    ENDPOINT_ACTIVE,
    OPEN_STATES,
    Delivery,
    Endpoint,
    db,
    utcnow,
)
from engine.pages import Page, paginate
from engine.ssrf import AddressPolicy, check_url

# Headers an endpoint may not set: the transport's own, and the signature's.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
        "expect",
    }
)
EDITABLE = ("url", "description", "event_types", "headers", "metadata", "retry_schedule")


def validate_fields(fields: Mapping[str, Any], policy: AddressPolicy) -> None:
    """Domain checks the JSON Schema cannot express.

    Raises:
        InvalidInputError: names the first field that is refused.
    """
    if "url" in fields:
        reason = check_url(fields["url"], policy)
        if reason is not None:
            raise InvalidInputError("url", reason)
    for pattern in fields.get("event_types") or ():
        if not is_valid_pattern(pattern):
            raise InvalidInputError("event_types", f"{pattern!r} is not an event type or prefix.*")
    for name in fields.get("headers") or {}:
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith(("webhook-", "proxy-")):
            raise InvalidInputError(f"headers.{name}", "this header is set by Hookline")


def create_endpoint(tenant_id: str, fields: Mapping[str, Any], policy: AddressPolicy) -> Endpoint:
    """Register an endpoint with a fresh signing secret.

    Raises:
        InvalidInputError: a field is refused.
    """
    validate_fields(fields, policy)
    now = utcnow()
    return Endpoint.create(
        id=new_id("ep"),
        tenant_id=tenant_id,
        url=fields["url"],
        description=fields.get("description"),
        event_types=sorted(set(fields.get("event_types") or [])),
        headers=dict(fields.get("headers") or {}),
        metadata=dict(fields.get("metadata") or {}),
        retry_schedule=fields.get("retry_schedule"),
        secret=signing.generate_secret(),
        status=ENDPOINT_ACTIVE,
        created_at=now,
        updated_at=now,
    )


def get_endpoint(tenant_id: str, endpoint_id: str) -> Endpoint:
    """One live endpoint of the tenant.

    Raises:
        NotFoundError: no such endpoint for this tenant (or it was deleted).
    """
    row = Endpoint.get_or_none(
        (Endpoint.id == endpoint_id)
        & (Endpoint.tenant_id == tenant_id)
        & Endpoint.deleted_at.is_null()
    )
    if row is None:
        raise NotFoundError("endpoint", endpoint_id)
    return row


def list_endpoints(tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """The tenant's live endpoints, newest first."""
    query = Endpoint.select().where(
        (Endpoint.tenant_id == tenant_id) & Endpoint.deleted_at.is_null()
    )
    return paginate(query, Endpoint.id, limit=limit, cursor=cursor)


def update_endpoint(
    tenant_id: str, endpoint_id: str, fields: Mapping[str, Any], policy: AddressPolicy
) -> Endpoint:
    """Change some fields of an endpoint.

    Raises:
        NotFoundError: no such endpoint for this tenant.
        InvalidInputError: a field is refused.
    """
    validate_fields(fields, policy)
    with db.atomic():
        endpoint = get_endpoint(tenant_id, endpoint_id)
        for name in EDITABLE:
            if name in fields:
                value = fields[name]
                if name == "event_types":
                    value = sorted(set(value or []))
                elif name in ("headers", "metadata"):
                    value = dict(value or {})
                setattr(endpoint, name, value)
        endpoint.updated_at = utcnow()
        endpoint.save()
    return endpoint


def delete_endpoint(tenant_id: str, endpoint_id: str) -> None:
    """Retire an endpoint: it receives nothing more, its open deliveries are cancelled.

    Its delivery log stays queryable.

    Raises:
        NotFoundError: no such endpoint for this tenant.
    """
    now = utcnow()
    with db.atomic():
        endpoint = get_endpoint(tenant_id, endpoint_id)
        Endpoint.update(deleted_at=now, updated_at=now).where(Endpoint.id == endpoint.id).execute()
        Delivery.update(
            status=CANCELLED, last_error="endpoint deleted", lease_until=None, updated_at=now
        ).where((Delivery.endpoint_id == endpoint.id) & Delivery.status.in_(OPEN_STATES)).execute()
