"""The admin's verbs on a tenant: list, read, suspend, resume, delete.

Suspending holds every endpoint of the tenant (`flow.set_held`): new fan-outs, retries
coming due and lost claims all wait as `throttled`, in PostgreSQL, spending no attempt,
and the breakers see no outcome, so nothing trips or alerts. Resuming lets them go; the
scheduler's flow pass releases them oldest event first, as each endpoint's flow allows.
Deleting holds them the same way, marks the tenant `deleting` and leaves the rest to
`engine.lifecycle.erase`. Each answers after the commit; the caller then empties the
credential caches (`CredentialGeneration.changed`) so the tenant's next request is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import JOIN

from engine.db.connect import is_postgres
from engine.db.models import Endpoint, EndpointFlow, Tenant, db, utcnow
from engine.db.pages import Page, paginate
from engine.deliveries import flow
from engine.errors import ConflictError, NotFoundError
from engine.tenancy import states
from engine.tenancy.credentials import CredentialGeneration


def list_tenants(*, limit: int, cursor: str | None, status: str | None = None) -> Page:
    """Tenants newest first, those of one status (`engine.tenancy.states`) if asked."""
    query = Tenant.select()
    if status is not None:
        query = query.where(Tenant.status == status)
    return paginate(query, Tenant.id, limit=limit, cursor=cursor)


def get_tenant(tenant_id: str) -> Tenant:
    """The tenant, whatever its state.

    Raises:
        NotFoundError: no such tenant (an erased one included).
    """
    tenant = Tenant.get_or_none(Tenant.id == tenant_id)
    if tenant is None:
        raise NotFoundError("tenant", tenant_id)
    return tenant


def suspend(tenant_id: str, *, credentials: CredentialGeneration) -> Tenant:
    """Refuse the tenant's requests and hold its deliveries; a suspended tenant stays so.

    Raises:
        NotFoundError: no such tenant.
        ConflictError: it is being deleted.
    """
    return _move(tenant_id, states.SUSPENDED, (states.ACTIVE,), held=True, credentials=credentials)


def resume(tenant_id: str, *, credentials: CredentialGeneration) -> Tenant:
    """Accept the tenant's requests again and let its deliveries go; an active one stays so.

    Raises:
        NotFoundError: no such tenant.
        ConflictError: it is being deleted.
    """
    return _move(tenant_id, states.ACTIVE, (states.SUSPENDED,), held=False, credentials=credentials)


def delete(tenant_id: str, *, credentials: CredentialGeneration) -> Tenant:
    """Refuse the tenant's requests, hold its deliveries and start erasing it.

    Repeating it answers the erasure under way.

    Raises:
        NotFoundError: no such tenant (or its erasure has finished).
    """
    return _move(
        tenant_id,
        states.DELETING,
        (states.ACTIVE, states.SUSPENDED),
        held=True,
        credentials=credentials,
        deletion=lambda now: {"started_at": _iso(now), "rows_deleted": 0, "step": "draining"},
    )


def _move(
    tenant_id: str,
    to: str,
    from_: tuple[str, ...],
    *,
    held: bool,
    credentials: CredentialGeneration,
    deletion: Any = None,
) -> Tenant:
    now = utcnow()
    with db.atomic():
        tenant = get_tenant(tenant_id)
        if tenant.status == to:
            return tenant
        if tenant.status not in from_:
            raise ConflictError(f"tenant {tenant_id!r} is {tenant.status}")
        changes: dict[str, Any] = {"status_changed_at": now}
        if deletion is not None:
            changes["deletion"] = deletion(now)
        states.move(Tenant.id == tenant_id, to=to, from_=from_, **changes)
        flow.set_held(endpoint_ids(tenant_id), held, now)
    credentials.changed()
    return get_tenant(tenant_id)


def endpoint_ids(tenant_id: str) -> list[str]:
    """Every endpoint of the tenant, deleted ones too (their deliveries may still wait)."""
    return [row.id for row in Endpoint.select(Endpoint.id).where(Endpoint.tenant_id == tenant_id)]


def hold_stragglers(now: dt.datetime | None = None) -> int:
    """Hold the endpoints of suspended and deleting tenants that are not held; answer how many.

    The scheduler's safety net: an endpoint created by a request authenticated just
    before its tenant's suspension committed. Reads only the tenants that are not
    active (a partial index), so it costs one probe when all are.

    The tenants read are locked (shared) until the endpoints are held: a resume that
    commits between the read and the hold would otherwise leave an active tenant's
    endpoint held, its deliveries waiting for ever. A resume under way makes this wait
    for its commit, and then finds the tenant active.
    """
    with flow.locking():
        tenants = Tenant.select(Tenant.id).where(Tenant.status != states.ACTIVE)
        if is_postgres(db.obj):
            # peewee takes any lock clause as a string; its stubs know only True.
            tenants = tenants.order_by(Tenant.id).for_update("FOR SHARE")  # type: ignore[arg-type]
        waiting = [row.id for row in tenants]
        if not waiting:
            return 0
        loose = (
            Endpoint.select(Endpoint.id)
            .join(
                EndpointFlow,
                on=(EndpointFlow.endpoint_id == Endpoint.id),
                join_type=JOIN.LEFT_OUTER,
            )
            .where(
                Endpoint.tenant_id.in_(waiting)
                & (EndpointFlow.endpoint_id.is_null() | ~EndpointFlow.held)
            )
        )
        return flow.set_held([row.id for row in loose], True, now)


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds") + "Z"
