"""Endpoint health in the database: the sliding window, the breaker row, the probe gate.

The supervisor folds batches of attempt outcomes in (`fold`, once per message:
`engine.breakers.folds`): 10-second buckets of successes and failures per
endpoint, the run of consecutive failures, the last success and failure, then
the breaker's judgement (`engine.breakers.state`). Breaker rows are locked
while they change, so the supervisors, the scheduler's tick and the API never
overwrite each other.
`admit` is the claim's gate: closed lets every delivery through, open none,
half-open exactly one probe (a conditional update).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from peewee import EXCLUDED

from engine.alerts import messages as alerts
from engine.breakers import folds
from engine.breakers import state as breaker
from engine.breakers.alerting import about
from engine.breakers.state import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerEvent, Policy, Window
from engine.db.connect import is_postgres
from engine.db.models import Delivery, Endpoint, EndpointHealth, HealthBucket, db, utcnow
from engine.deliveries.states import PARKED
from engine.endpoints.states import ACTIVE

log = structlog.get_logger("hookline.breaker")

BUCKET_S = 10
MAX_WINDOW_S = 86400  # the longest window an endpoint may ask for; older buckets are pruned
_EPOCH = dt.datetime(1970, 1, 1)
_BREAKER_FIELDS = tuple(f.name for f in dataclasses.fields(Breaker))


@dataclass(frozen=True)
class Observation:
    """One attempt's outcome as the supervisor sees it."""

    endpoint_id: str
    success: bool
    at: dt.datetime
    status_code: int | None
    delivery_id: str
    quarantined: bool = False


@dataclass(frozen=True)
class HealthView:
    """What `GET /v1/endpoints/{id}/health` shows."""

    endpoint_id: str
    status: str
    state: str
    failure_rate: float
    window_attempts: int
    consecutive_failures: int
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    opened_at: dt.datetime | None
    next_probe_at: dt.datetime | None
    disables_at: dt.datetime | None
    parked: int


def epoch_s(value: dt.datetime) -> int:
    """Whole Unix seconds of a naive UTC datetime."""
    return int((value - _EPOCH).total_seconds())


def to_breaker(row: EndpointHealth | None) -> Breaker:
    """The breaker a row holds; a closed one for an endpoint without a row."""
    if row is None:
        return Breaker()
    return Breaker(**{name: getattr(row, name) for name in _BREAKER_FIELDS})


def store(row: EndpointHealth, state: Breaker, policy: Policy, now: dt.datetime) -> None:
    """Copy a breaker onto its row, with when the tick must look at it next; then save."""
    for name in _BREAKER_FIELDS:
        setattr(row, name, getattr(state, name))
    row.due_at = breaker.due_at(state, policy)
    row.updated_at = now
    row.save()


def lock_rows(endpoint_ids: Sequence[str], now: dt.datetime) -> dict[str, EndpointHealth]:
    """The breaker rows of these endpoints, created if missing, locked until commit."""
    if not endpoint_ids:
        return {}
    EndpointHealth.insert_many(
        [{"endpoint_id": i, "state": CLOSED, "updated_at": now} for i in endpoint_ids]
    ).on_conflict_ignore().execute()
    query = (
        EndpointHealth.select()
        .where(EndpointHealth.endpoint_id.in_(list(endpoint_ids)))
        .order_by(EndpointHealth.endpoint_id)
    )
    if is_postgres(db.obj):
        query = query.for_update()
    return {row.endpoint_id: row for row in query}


def windows(policies: Mapping[str, Policy], now: dt.datetime) -> dict[str, Window]:
    """Each endpoint's window under its own policy."""
    if not policies:
        return {}
    cutoffs = {i: epoch_s(now) - p.window_s - BUCKET_S for i, p in policies.items()}
    sums = {i: [0, 0] for i in policies}
    rows = HealthBucket.select().where(
        HealthBucket.endpoint_id.in_(list(policies))
        & (HealthBucket.bucket_start > min(cutoffs.values()))
    )
    for row in rows:
        if row.bucket_start > cutoffs[row.endpoint_id]:
            sums[row.endpoint_id][0] += row.successes
            sums[row.endpoint_id][1] += row.failures
    return {i: Window(ok, failed) for i, (ok, failed) in sums.items()}


def fold(
    observations: Iterable[Observation],
    *,
    policy: Policy,
    now: dt.datetime | None = None,
    message_id: str | None = None,
) -> list[str] | None:
    """Fold outcomes into each endpoint's window and breaker; answer the alerts emitted.

    With the `message_id` that carried them, a message folded before (redelivered
    after its supervisor died unacked) is skipped: answers None.
    """
    now = now or utcnow()
    grouped: dict[str, list[Observation]] = {}
    for seen in sorted(observations, key=lambda o: o.at):
        grouped.setdefault(seen.endpoint_id, []).append(seen)
    emitted: list[str] = []
    with db.atomic():
        if message_id is not None and not folds.first_time(message_id, now):
            return None
        endpoints = {e.id: e for e in Endpoint.select().where(Endpoint.id.in_(list(grouped)))}
        ids = sorted(i for i in grouped if i in endpoints)
        if not ids:
            return []
        _count(grouped, ids)
        rows = lock_rows(ids, now)
        policies = {i: policy.merged(endpoints[i].breaker) for i in ids}
        current = windows(policies, now)
        for i in ids:
            emitted += _fold_one(endpoints[i], rows[i], grouped[i], current[i], policies[i], now)
        longest = max(p.window_s for p in policies.values())
        HealthBucket.delete().where(
            HealthBucket.endpoint_id.in_(ids)
            & (HealthBucket.bucket_start <= epoch_s(now) - longest - BUCKET_S)
        ).execute()
    return emitted


def _count(grouped: Mapping[str, list[Observation]], ids: Sequence[str]) -> None:
    totals: dict[tuple[str, int], list[int]] = {}
    for i in ids:
        for seen in grouped[i]:
            counts = totals.setdefault((i, epoch_s(seen.at) // BUCKET_S * BUCKET_S), [0, 0])
            counts[0 if seen.success else 1] += 1
    HealthBucket.insert_many(
        [
            {"endpoint_id": i, "bucket_start": start, "successes": ok, "failures": failed}
            for (i, start), (ok, failed) in totals.items()
        ]
    ).on_conflict(
        conflict_target=[HealthBucket.endpoint_id, HealthBucket.bucket_start],
        update={
            HealthBucket.successes: HealthBucket.successes + EXCLUDED.successes,
            HealthBucket.failures: HealthBucket.failures + EXCLUDED.failures,
        },
    ).execute()


def _fold_one(
    endpoint: Endpoint,
    row: EndpointHealth,
    seen: Sequence[Observation],
    window: Window,
    policy: Policy,
    now: dt.datetime,
) -> list[str]:
    state = to_breaker(row)
    consecutive, probe = state.consecutive_failures, None
    for outcome in seen:
        consecutive = 0 if outcome.success else consecutive + 1
        if outcome.delivery_id == state.probe_delivery_id:
            probe = outcome.success
        moment = "last_success_at" if outcome.success else "last_failure_at"
        setattr(row, moment, max(getattr(row, moment) or outcome.at, outcome.at))
    quarantined = sum(1 for outcome in seen if outcome.quarantined)
    if quarantined:
        row.quarantined_pending += quarantined
        row.quarantined_since = row.quarantined_since or now
    if endpoint.status != ACTIVE or endpoint.deleted_at is not None:
        store(row, dataclasses.replace(state, consecutive_failures=consecutive), policy, now)
        return []
    change = breaker.after_outcomes(
        state,
        window=window,
        consecutive_failures=consecutive,
        probe_succeeded=probe,
        policy=policy,
        now=now,
    )
    emitted = []
    if change.events:
        log.info(
            "breaker_changed",
            endpoint_id=endpoint.id,
            events=change.logged(),
            state=change.breaker.state,
            failure_rate=round(window.failure_rate, 4),
            window_attempts=window.attempts,
            consecutive_failures=consecutive,
        )
    if BreakerEvent.OPENED in change.events:
        emitted.append(about(endpoint, alerts.FAILING, change.breaker, window, policy, now))
    if BreakerEvent.CLOSED in change.events:
        HealthBucket.delete().where(HealthBucket.endpoint_id == endpoint.id).execute()
        row.releasing, row.release_next_at = True, now
        parked = parked_count(endpoint.id)
        emitted.append(
            about(endpoint, alerts.RECOVERED, change.breaker, window, policy, now, parked=parked)
        )
    store(row, change.breaker, policy, now)
    return [alert_id for alert_id in emitted if alert_id]


def admit(endpoint_id: str, delivery_id: str, state: str | None, *, now: dt.datetime) -> bool:
    """The claim's gate: True lets the delivery be attempted, False parks it.

    Half-open admits one probe: the delivery that first takes the probe slot.
    """
    if state is None or state == CLOSED:
        return True
    if state == OPEN:
        return False
    taken = (
        EndpointHealth.update(probe_delivery_id=delivery_id, probe_started_at=now)
        .where(
            (EndpointHealth.endpoint_id == endpoint_id)
            & (EndpointHealth.state == HALF_OPEN)
            & (
                EndpointHealth.probe_delivery_id.is_null()
                | (EndpointHealth.probe_delivery_id == delivery_id)
            )
        )
        .execute()
    )
    return bool(taken)


def give_back_probe(endpoint_id: str, delivery_id: str) -> None:
    """Free the probe slot a delivery took but could not use."""
    EndpointHealth.update(probe_delivery_id=None, probe_started_at=None).where(
        (EndpointHealth.endpoint_id == endpoint_id)
        & (EndpointHealth.probe_delivery_id == delivery_id)
    ).execute()


def parked_count(endpoint_id: str) -> int:
    """How many of the endpoint's deliveries are parked."""
    return int(
        Delivery.select()
        .where((Delivery.endpoint_id == endpoint_id) & (Delivery.status == PARKED))
        .count()
    )


def view(endpoint: Endpoint, policy: Policy, now: dt.datetime | None = None) -> HealthView:
    """An endpoint's breaker, window and parked deliveries, under its own policy."""
    now = now or utcnow()
    policy = policy.merged(endpoint.breaker)
    row = EndpointHealth.get_or_none(EndpointHealth.endpoint_id == endpoint.id)
    state = to_breaker(row)
    window = windows({endpoint.id: policy}, now)[endpoint.id]
    return HealthView(
        endpoint_id=endpoint.id,
        status=endpoint.status,
        state=state.state,
        failure_rate=round(window.failure_rate, 4),
        window_attempts=window.attempts,
        consecutive_failures=state.consecutive_failures,
        last_success_at=row.last_success_at if row else None,
        last_failure_at=row.last_failure_at if row else None,
        opened_at=state.outage_started_at,
        next_probe_at=state.next_probe_at if state.state == OPEN else None,
        disables_at=breaker.disables_at(state, policy) if endpoint.status == ACTIVE else None,
        parked=parked_count(endpoint.id),
    )
