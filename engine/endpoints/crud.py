"""Endpoints: where a tenant's events go, and which ones."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from engine.db.models import UNORDERED, Delivery, Endpoint, db, utcnow
from engine.db.pages import Page, paginate
from engine.deliveries import states as delivery_states
from engine.endpoints import payload_filter, receiver_auth, states, transforms
from engine.endpoints import secrets as endpoint_secrets
from engine.endpoints.filters import is_valid_pattern
from engine.errors import InvalidInputError, NotFoundError
from engine.ids import new_id
from engine.sealed_fields import keep_masked, open_headers, seal_headers
from engine.secretbox import SecretBox
from engine.ssrf import ALLOW_HINT, REFUSED_ADDRESS_PREFIX, AddressPolicy, check_url

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
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}")
EDITABLE = (
    "url",
    "description",
    "event_types",
    "headers",
    "metadata",
    "retry_schedule",
    "breaker",
    "filter",
    "transform",
    "rate_limit_per_s",
    "max_in_flight",
    "ordering",
)
# API field names whose column is named otherwise.
_COLUMNS = {"filter": "payload_filter"}


def validate_fields(fields: Mapping[str, Any], policy: AddressPolicy) -> None:
    """Domain checks the JSON Schema cannot express.

    Raises:
        InvalidInputError: names the first field that is refused.
    """
    if "url" in fields:
        reason = check_url(fields["url"], policy)
        if reason is not None and reason.startswith(REFUSED_ADDRESS_PREFIX):
            reason = f"{reason}; {ALLOW_HINT}"
        if reason is not None:
            raise InvalidInputError("url", reason)
    for pattern in fields.get("event_types") or ():
        if not is_valid_pattern(pattern):
            raise InvalidInputError("event_types", f"{pattern!r} is not an event type or prefix.*")
    for name, value in (fields.get("headers") or {}).items():
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidInputError(f"headers.{name}", "is not an HTTP header name")
        if any(char in value for char in "\r\n\x00"):
            raise InvalidInputError(f"headers.{name}", "a header value may not hold CR, LF or NUL")
        if lowered in RESERVED_HEADERS or lowered.startswith(("webhook-", "proxy-")):
            raise InvalidInputError(f"headers.{name}", "this header is set by Hookline")
    if fields.get("filter") is not None:
        payload_filter.check(fields["filter"])
    transforms.check(fields.get("transform"))


def create_endpoint(
    tenant_id: str,
    fields: Mapping[str, Any],
    policy: AddressPolicy,
    box: SecretBox,
    *,
    verify_default: bool = False,
) -> tuple[Endpoint, str]:
    """Register an endpoint; answer it with its signing secret in plaintext.

    The secret is the caller's `secret`, or a fresh one; it is stored sealed, and so are
    the custom `headers` (`engine.sealed_fields`).
    With `verify` (or `verify_default`, the operator's policy, which a
    `verify: false` does not lift) the endpoint starts `unverified` and
    receives nothing until it answers a verification challenge.

    Raises:
        InvalidInputError: a field is refused; a header written `"***"` (there is no
            current value to keep).
    """
    validate_fields(fields, policy)
    auth, tls = receiver_auth.written(fields, {})
    receiver_auth.check(auth, tls, fields["url"], policy)
    now = utcnow()
    endpoint_id = new_id("ep")
    headers = keep_masked(fields.get("headers") or {}, None, "headers")
    sealed, plaintext = endpoint_secrets.issue(endpoint_id, box, fields.get("secret"))
    verify = bool(fields.get("verify")) or verify_default
    row = Endpoint.create(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=fields["url"],
        description=fields.get("description"),
        event_types=sorted(set(fields.get("event_types") or [])),
        headers=seal_headers(headers, box, endpoint_id),
        receiver_auth=receiver_auth.seal(auth, tls, box, endpoint_id),
        metadata=dict(fields.get("metadata") or {}),
        retry_schedule=fields.get("retry_schedule"),
        breaker=fields.get("breaker"),
        payload_filter=fields.get("filter"),
        transform=fields.get("transform"),
        rate_limit_per_s=fields.get("rate_limit_per_s"),
        max_in_flight=fields.get("max_in_flight"),
        ordering=fields.get("ordering") or UNORDERED,
        secret=sealed,
        status=states.initial(states.UNVERIFIED if verify else states.ACTIVE),
        created_at=now,
        updated_at=now,
    )
    return row, plaintext


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
    tenant_id: str,
    endpoint_id: str,
    fields: Mapping[str, Any],
    policy: AddressPolicy,
    box: SecretBox,
) -> Endpoint:
    """Change some fields of an endpoint.

    A new URL for a verified or unverified endpoint makes it `unverified`
    until the new URL answers a challenge. New `headers` replace the old ones as a
    whole, sealed; a header written `"***"` keeps its current value.

    Raises:
        NotFoundError: no such endpoint for this tenant.
        InvalidInputError: a field is refused; a header written `"***"` that it lacks.
        CryptoError: its current headers do not open with the configured keys.
    """
    validate_fields(fields, policy)
    now = utcnow()
    with db.atomic():
        endpoint = get_endpoint(tenant_id, endpoint_id)
        changed = _require_reverification(endpoint, fields, now)
        for name in EDITABLE:
            if name in fields:
                value = fields[name]
                if name == "event_types":
                    value = sorted(set(value or []))
                elif name == "headers":
                    value = _sealed_headers(endpoint, value or {}, box)
                elif name == "metadata":
                    value = dict(value or {})
                column = _COLUMNS.get(name, name)
                setattr(endpoint, column, value)
                changed.append(column)
        if {"auth", "tls", "url"} & set(fields):
            current = receiver_auth.opened(endpoint.receiver_auth, box, endpoint.id)
            auth, tls = receiver_auth.written(fields, current)
            receiver_auth.check(auth, tls, endpoint.url, policy)
            endpoint.receiver_auth = receiver_auth.seal(auth, tls, box, endpoint.id)
            changed.append("receiver_auth")
        endpoint.updated_at = now
        # Never the status: only `states` moves it, conditionally.
        endpoint.save(only=[getattr(Endpoint, name) for name in (*changed, "updated_at")])
    return endpoint


def _sealed_headers(endpoint: Endpoint, written: Mapping[str, str], box: SecretBox) -> dict:
    """The column for headers written over the endpoint's: each `"***"` keeps its value."""
    current = open_headers(endpoint.headers, box, endpoint.id)
    return seal_headers(keep_masked(written, current, "headers"), box, endpoint.id)


def _require_reverification(
    endpoint: Endpoint, fields: Mapping[str, Any], now: dt.datetime
) -> list[str]:
    """A verified (or still unverified) endpoint moved to a new URL must prove it again.

    Answers the fields it changed besides the status.
    """
    moved = "url" in fields and fields["url"] != endpoint.url
    if not moved or (endpoint.verified_at is None and endpoint.status != states.UNVERIFIED):
        return []
    endpoint.verified_at = None
    endpoint.verification_error = None
    if states.move(
        Endpoint.id == endpoint.id, to=states.UNVERIFIED, from_=(states.ACTIVE,), updated_at=now
    ):
        endpoint.status = states.UNVERIFIED
    return ["verified_at", "verification_error"]


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
        delivery_states.move(
            Delivery.endpoint_id == endpoint.id,
            to=delivery_states.CANCELLED,
            from_=delivery_states.OPEN_STATES,
            last_error="endpoint deleted",
            lease_until=None,
            updated_at=now,
        )
