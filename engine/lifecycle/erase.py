"""Erasing a deleted tenant: every row it owns, in batches, resumable, then the tenant row.

The scheduler's leader calls `erase_some` on every pass while a tenant is `deleting`.
Each batch is its own transaction and records its progress on the tenant row
(`tenant.deletion`), so a crash loses at most the batch in flight and the next
leader carries on from the database as it stands. Nothing is remembered in memory.

1. **Draining.** Deletion held the tenant's endpoints (`engine.lifecycle.tenants`), so no
   new attempt starts; the erasure waits until none of its deliveries is under a live
   lease (claimed or released), so no worker records an attempt of a row already gone.
2. **Erasing.** `STEPS`, in order, each up to `batch` rows per transaction: a
   delivery with its attempts, an event with its pending fan-out, the endpoints' breakers,
   flow rows, replay lanes, health buckets and alerts, then every remaining table that has a
   `tenant_id` column (found from the models, so a new table of the tenant's is erased
   without a change here), and its rate-limit counters.
3. **Done.** A pass in which every step finds nothing, followed by one sweep by `tenant_id`
   over every such table (the safety net: a row a racing writer added), deletes the
   tenant row. `GET /v1/tenants/{id}` answers 404 from then on.

The admin's audit record of the deletion (`audit_log` with a null `tenant_id`) is kept:
it names the tenant's id, and nothing of its data.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from engine.db.connect import is_postgres
from engine.db.models import (
    MODELS,
    AlertRecord,
    AlertSend,
    ApiKey,
    Attempt,
    Delivery,
    Endpoint,
    EndpointFlow,
    EndpointHealth,
    Event,
    EventFanOut,
    HealthBucket,
    RateLimitWindow,
    ReplayLane,
    Tenant,
    db,
    utcnow,
)
from engine.deliveries.states import DELIVERING, QUEUED
from engine.tenancy import ratelimit, states

log = structlog.get_logger(__name__)

# Rows one transaction deletes from one table.
BATCH = 1000
# Most seconds one call spends before it hands the scheduler's loop back.
BUDGET_S = 0.2

Step = Callable[[str, Sequence[str], int], int]


def _deliveries(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
    """A batch of deliveries, each with its attempts (found by `attempt_delivery_number`)."""
    ids = [
        r.id
        for r in Delivery.select(Delivery.id).where(Delivery.tenant_id == tenant_id).limit(batch)
    ]
    if not ids:
        return 0
    gone = Attempt.delete().where(Attempt.delivery_id.in_(ids)).execute()
    return int(gone) + int(Delivery.delete().where(Delivery.id.in_(ids)).execute())


def _events(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
    """A batch of events, each with its pending fan-out."""
    ids = [r.id for r in Event.select(Event.id).where(Event.tenant_id == tenant_id).limit(batch)]
    if not ids:
        return 0
    gone = EventFanOut.delete().where(EventFanOut.event_id.in_(ids)).execute()
    return int(gone) + int(Event.delete().where(Event.id.in_(ids)).execute())


def _by_endpoint(model: Any) -> Step:
    """A table keyed by endpoint id, without a `tenant_id` of its own."""

    def step(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
        if not endpoints:
            return 0
        return int(model.delete().where(model.endpoint_id.in_(list(endpoints))).execute())

    step.__name__ = model._meta.table_name
    return step


def _alerts(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
    """A batch of the endpoints' alerts, each with its channels' sends."""
    if not endpoints:
        return 0
    ids = [
        r.id
        for r in AlertRecord.select(AlertRecord.id)
        .where(AlertRecord.endpoint_id.in_(list(endpoints)))
        .limit(batch)
    ]
    if not ids:
        return 0
    gone = AlertSend.delete().where(AlertSend.alert_id.in_(ids)).execute()
    return int(gone) + int(AlertRecord.delete().where(AlertRecord.id.in_(ids)).execute())


def _rate_limits(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
    """The counters of the tenant's buckets and its keys' (`engine.tenancy.limiter`).

    A JWT's bucket is named by a digest of its tenant and subject, which cannot be found
    from the tenant; its counters go with the window sweep, within minutes.
    """
    keys = [r.id for r in ApiKey.select(ApiKey.id).where(ApiKey.tenant_id == tenant_id)]
    names = [
        f"{budget}:{kind}:{ident}"
        for budget in (ratelimit.INGEST, ratelimit.MANAGEMENT)
        for kind, ident in [("tenant", tenant_id)] + [("key", key) for key in keys]
    ]
    return int(RateLimitWindow.delete().where(RateLimitWindow.bucket_key.in_(names)).execute())


def _by_tenant(model: Any) -> Step:
    """A table with a `tenant_id` column: a batch by its primary key, or all at once."""

    def step(tenant_id: str, endpoints: Sequence[str], batch: int) -> int:
        key = model._meta.primary_key
        if key is None or not hasattr(key, "column_name") or key.model is not model:
            return int(model.delete().where(model.tenant_id == tenant_id).execute())
        picked = model.select(key).where(model.tenant_id == tenant_id).limit(batch)
        ids = [getattr(row, key.name) for row in picked]
        return int(model.delete().where(key.in_(ids)).execute()) if ids else 0

    step.__name__ = model._meta.table_name
    return step


# Tables whose rows are found through the tenant's endpoints, events or deliveries (they
# have no `tenant_id`), and tables that hold no tenant's data. Every model is in one of
# these or has a `tenant_id` (tests/api/test_tenant_lifecycle.py holds it).
THROUGH_OTHERS = (
    "endpoint_health",
    "endpoint_flow",
    "endpoint_health_bucket",
    "replay_lane",
    "alert_send",
    "event_fan_out",
    "rate_limit",
)
TENANT_FREE = ("supervised_message", "schema_version", "oauth_key")
# Erased by the steps above, in this order, before the generic ones; the endpoints last but
# one (the others are found through them), the keys after their rate-limit counters.
_SPECIFIC = (Delivery, Attempt, Event, AlertRecord, ApiKey, Endpoint, Tenant)


def tenant_tables() -> list[Any]:
    """Every model with a `tenant_id` column, except the tenant's own row."""
    return [m for m in MODELS if "tenant_id" in m._meta.fields and m is not Tenant]


def steps() -> list[Step]:
    """The erasure's steps, in order."""
    generic = [_by_tenant(m) for m in tenant_tables() if m not in _SPECIFIC]
    return [
        _deliveries,
        _events,
        _by_endpoint(EndpointHealth),
        _by_endpoint(EndpointFlow),
        _by_endpoint(ReplayLane),
        _by_endpoint(HealthBucket),
        _alerts,
        *generic,
        _rate_limits,
        _by_tenant(ApiKey),
        _by_tenant(Endpoint),
    ]


def erase_some(*, batch: int = BATCH, budget_s: float = BUDGET_S) -> bool:
    """Erase a batch or more of the first deleting tenant's rows; True when more remains.

    Spends about `budget_s`, then hands back. Several schedulers never erase one tenant
    at once: its row is locked (`SKIP LOCKED`) for each batch.
    """
    deadline = time.monotonic() + budget_s
    while True:
        more = _one_batch(batch)
        if not more:  # nothing to erase, or it waits for leases to end: until the next pass
            return False
        if time.monotonic() >= deadline:
            return True


def _one_batch(batch: int) -> bool:
    """One transaction of work; False: no tenant is being deleted, or it waits to drain."""
    with db.atomic():
        tenant = _next_deleting()
        if tenant is None:
            return False
        now = utcnow()
        if _in_flight(tenant.id, now):
            _progress(tenant, step="draining", deleted=0)
            return False
        endpoints = [
            r.id for r in Endpoint.select(Endpoint.id).where(Endpoint.tenant_id == tenant.id)
        ]
        for step in steps():
            deleted = step(tenant.id, endpoints, batch)
            if deleted:
                _progress(tenant, step=step.__name__.strip("_"), deleted=deleted)
                return True
        swept = sum(_by_tenant(m)(tenant.id, endpoints, 1 << 30) for m in tenant_tables())
        if swept:  # a racing writer's rows: the next pass looks again
            _progress(tenant, step="sweep", deleted=swept)
            return True
        Tenant.delete().where(Tenant.id == tenant.id).execute()
    log.info("tenant_erased", tenant_id=tenant.id, rows=(tenant.deletion or {}).get("rows_deleted"))
    return True


def _next_deleting() -> Any:
    query = (
        Tenant.select()
        .where(Tenant.status == states.DELETING)
        .order_by(Tenant.status_changed_at, Tenant.id)
        .limit(1)
    )
    if is_postgres(db.obj):
        query = query.for_update(skip_locked=True)
    return query.get_or_none()


def _in_flight(tenant_id: str, now: dt.datetime) -> bool:
    """Whether a delivery of the tenant is claimed or released under a live lease."""
    return (
        Delivery.select(Delivery.id)
        .where(
            (Delivery.tenant_id == tenant_id)
            & Delivery.status.in_((DELIVERING, QUEUED))
            & (Delivery.lease_until >= now)
        )
        .exists()
    )


def _progress(tenant: Any, *, step: str, deleted: int) -> None:
    progress = dict(tenant.deletion or {})
    if deleted == 0 and progress.get("step") == step:
        return
    progress["step"] = step
    progress["rows_deleted"] = int(progress.get("rows_deleted", 0)) + deleted
    Tenant.update(deletion=progress).where(Tenant.id == tenant.id).execute()
    tenant.deletion = progress
