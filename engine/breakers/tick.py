"""What time alone does to breakers, run by the active scheduler on every pass.

Each step is cheap when nothing is due (a partial index each) and bounded
by `batch` when much is: half-open breakers whose cool-down ended, warn and
disable endpoints open too long, free lost probes, release parked
deliveries of closed breakers at their pace, send quarantine digests, and
prune old window buckets and the ids of outcome messages folded long ago.
Alerts are recorded here; the caller publishes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, cast

import structlog
from peewee import fn

from engine.alerts import messages as alerts
from engine.alerts import outbox as alert_records
from engine.breakers import alerting, folds, parking
from engine.breakers import state as breaker
from engine.breakers import store as health
from engine.breakers.state import CLOSED, HALF_OPEN, OPEN, BreakerEvent, OutageWarning, Policy
from engine.db.connect import is_postgres
from engine.db.models import Delivery, Endpoint, EndpointHealth, HealthBucket, db
from engine.deliveries.states import PARKED
from engine.endpoints import states as endpoint_states

log = structlog.get_logger("hookline.breaker")

DIGEST_SETTLE_S = 10.0  # a digest waits this long after its first quarantine, to gather a burst


def _locked(query: Any) -> list[EndpointHealth]:
    """The rows, locked on PostgreSQL; rows another transaction holds wait for the next pass."""
    if is_postgres(db.obj):
        query = query.for_update(of=EndpointHealth, skip_locked=True)
    return list(query)


def _live(endpoint_ids: Iterable[str]) -> dict[str, Endpoint]:
    found = Endpoint.select().where(
        Endpoint.id.in_(list(endpoint_ids))
        & (Endpoint.status == endpoint_states.ACTIVE)
        & Endpoint.deleted_at.is_null()
    )
    return {row.id: row for row in found}


def advance(policy: Policy, *, now: dt.datetime, probe_timeout_s: float, batch: int) -> list[str]:
    """Apply the due time-driven transitions; answer the alerts emitted."""
    lost_before = now - dt.timedelta(seconds=probe_timeout_s)
    emitted: list[str] = []
    with db.atomic():
        query = (
            EndpointHealth.select()
            .where(
                (EndpointHealth.state != CLOSED)
                & (
                    (EndpointHealth.due_at <= now)
                    | (EndpointHealth.probe_started_at <= lost_before)
                )
            )
            .order_by(EndpointHealth.due_at)
            .limit(batch)
        )
        rows = _locked(query)
        endpoints = _live(row.endpoint_id for row in rows)
        for row in rows:
            endpoint = endpoints.get(row.endpoint_id)
            if endpoint is None:  # disabled or deleted: its breaker waits for `enable`
                row.due_at, row.probe_delivery_id, row.probe_started_at = None, None, None
                row.save()
                continue
            emitted += _advance_one(
                endpoint, row, policy.merged(endpoint.breaker), now, probe_timeout_s
            )
    return emitted


def _advance_one(
    endpoint: Endpoint,
    row: EndpointHealth,
    policy: Policy,
    now: dt.datetime,
    probe_timeout_s: float,
) -> list[str]:
    change = breaker.tick(
        health.to_breaker(row), policy=policy, now=now, probe_timeout_s=probe_timeout_s
    )
    state = change.breaker
    if change.events:
        log.info(
            "breaker_changed",
            endpoint_id=endpoint.id,
            events=change.logged(),
            state=state.state,
        )
    warns = change.warning is not None or BreakerEvent.DISABLE in change.events
    window = health.windows({endpoint.id: policy}, now)[endpoint.id] if warns else None
    emitted = [_act_on(event, endpoint, state, window, policy, now) for event in change.events]
    health.store(row, state, policy, now)
    if BreakerEvent.DISABLE in change.events:
        row.due_at = None
        row.save()
    return [alert_id for alert_id in emitted if alert_id]


def _act_on(
    event: BreakerEvent | OutageWarning,
    endpoint: Endpoint,
    state: breaker.Breaker,
    window: breaker.Window | None,
    policy: Policy,
    now: dt.datetime,
) -> str | None:
    """Do what one time-driven event asks; answer the alert it emitted, if any."""
    match event:
        case OutageWarning(pct=pct):
            return alerting.about(
                endpoint,
                alerts.FAILING,
                state,
                window,
                policy,
                now,
                dedup=f"o{state.outage}:w{pct}",
                warning_pct=pct,
            )
        case BreakerEvent.DISABLE:
            reason = (
                f"circuit breaker open since {alert_records.stamp(state.outage_started_at)}, "
                f"{policy.disable_after_s:g} s without recovery"
            )
            return endpoint_states.disable(
                endpoint,
                reason,
                breaker=state,
                dedup=f"o{state.outage}",
                now=now,
                window=window,
                parked=health.parked_count(endpoint.id),
            )
        case BreakerEvent.HALF_OPENED | BreakerEvent.PROBE_LOST:
            parking.release_one(endpoint.id, now)
    return None


def release(policy: Policy, *, now: dt.datetime, batch: int) -> int:
    """Release parked deliveries of closed breakers at each endpoint's pace; answer how many."""
    released = 0
    with db.atomic():
        query = EndpointHealth.select().where(EndpointHealth.releasing == True).limit(batch)  # noqa: E712
        rows = _locked(query)
        endpoints = _live(row.endpoint_id for row in rows)
        for row in rows:
            endpoint = endpoints.get(row.endpoint_id)
            if endpoint is None or row.state != CLOSED:
                row.releasing, row.release_next_at = False, None
            else:
                per_s = policy.merged(endpoint.breaker).release_per_s
                count, row.release_next_at = parking.release(
                    endpoint.id, per_s=per_s, start=row.release_next_at or now, now=now
                )
                released += count
                row.releasing = row.release_next_at is not None
            row.save()
    return released


def sweep_parked(now: dt.datetime) -> int:
    """Mark for release the parked deliveries no breaker holds back (a claim that raced a close)."""
    parked = Delivery.select(Delivery.endpoint_id).where(Delivery.status == PARKED).distinct()
    endpoint_ids = sorted(_live(row.endpoint_id for row in parked))
    marked = 0
    with db.atomic():
        for row in health.lock_rows(endpoint_ids, now).values():
            if row.state == CLOSED and not row.releasing:
                row.releasing, row.release_next_at = True, now
                row.save()
                marked += 1
    return marked


def digest(policy: Policy, *, digest_s: float, now: dt.datetime, batch: int) -> list[str]:
    """Emit the quarantine digests that are due, one per endpoint per `digest_s`."""
    settled = now - dt.timedelta(seconds=min(DIGEST_SETTLE_S, digest_s))
    spaced = now - dt.timedelta(seconds=digest_s)
    emitted = []
    with db.atomic():
        query = (
            EndpointHealth.select()
            .where(
                (EndpointHealth.quarantined_pending > 0)
                & (EndpointHealth.quarantined_since <= settled)
                & (
                    EndpointHealth.digest_sent_at.is_null()
                    | (EndpointHealth.digest_sent_at <= spaced)
                )
            )
            .limit(batch)
        )
        rows = _locked(query)
        endpoints = {
            e.id: e for e in Endpoint.select().where(Endpoint.id.in_([r.endpoint_id for r in rows]))
        }
        for row in rows:
            endpoint, count = endpoints[row.endpoint_id], row.quarantined_pending
            mine = policy.merged(endpoint.breaker)
            window = health.windows({endpoint.id: mine}, now)[endpoint.id]
            emitted.append(
                alerting.about(
                    endpoint,
                    alerts.QUARANTINED,
                    health.to_breaker(row),
                    window,
                    mine,
                    now,
                    dedup=f"d{row.digest_seq + 1}",
                    quarantined=count,
                )
            )
            row.quarantined_pending, row.quarantined_since = 0, None
            row.digest_seq, row.digest_sent_at = row.digest_seq + 1, now
            row.save()
    return [alert_id for alert_id in emitted if alert_id]


def prune(now: dt.datetime) -> int:
    """Drop window buckets older than the longest window any endpoint may have, and the
    ids of outcome messages folded long ago (a batch of them); answer the rows dropped."""
    cutoff = health.epoch_s(now) - health.MAX_WINDOW_S - health.BUCKET_S
    buckets = int(HealthBucket.delete().where(HealthBucket.bucket_start < cutoff).execute())
    return buckets + folds.prune(now)


def breaker_counts() -> dict[str, int]:
    """Live endpoints by breaker state (an endpoint without a breaker row is closed)."""
    live = (Endpoint.status == endpoint_states.ACTIVE) & Endpoint.deleted_at.is_null()
    counts = {OPEN: 0, HALF_OPEN: 0}
    query = (
        EndpointHealth.select(EndpointHealth.state, fn.COUNT(EndpointHealth.endpoint_id).alias("n"))
        .join(Endpoint, on=(Endpoint.id == EndpointHealth.endpoint_id))
        .where(live & (EndpointHealth.state != CLOSED))
        .group_by(EndpointHealth.state)
    )
    rows = cast("list[dict[str, Any]]", list(query.dicts()))
    for row in rows:
        counts[row["state"]] = int(row["n"])
    counts[CLOSED] = max(0, Endpoint.select().where(live).count() - sum(counts.values()))
    return counts
