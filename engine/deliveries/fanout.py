"""Fan-out: an event becomes one delivery per matching endpoint.

The worker that fans out claims the first deliveries itself
(`fan_out_and_claim`); the rest are published, and `mark_queued` records it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.db.connect import copy_rows, is_postgres
from engine.db.models import Attempt, Delivery, Endpoint, EndpointFlow, Event, db, utcnow
from engine.deliveries import flow, states
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim, attempt_row
from engine.deliveries.states import PENDING, QUEUED, SUCCEEDED
from engine.endpoints import payload_filter
from engine.endpoints import states as endpoint_states
from engine.endpoints.filters import matches
from engine.endpoints.payload_filter import Matcher
from engine.errors import InvalidInputError
from engine.ids import id_timestamp_ms, new_id

log = structlog.get_logger(__name__)

# The states new rows are inserted in, checked against the table once, not per row.
CREATED_CLAIMED = states.initial(states.DELIVERING)
CREATED_PENDING = states.initial(PENDING)
CREATED_THROTTLED = states.initial(states.THROTTLED)
CREATED_PAUSED = states.initial(states.PAUSED)


def fan_out(event_id: str, *, lease_s: float = 30.0, now: dt.datetime | None = None) -> list[str]:
    """Create one delivery per matching endpoint; answer the ids still to publish.

    The new rows wait `lease_s` for the caller to publish them before the
    scheduler does. Safe to repeat: existing (event, endpoint) pairs are kept.
    """
    return fan_out_and_claim(event_id, lease_s=lease_s, now=now).pending


@dataclass(frozen=True)
class FanOut:
    """What one fan-out created: deliveries already claimed, and ids still to publish.

    `throttled`: the endpoints whose flow control now holds some of the new deliveries and
    held none before (`engine.deliveries.flow.mark_waiting`); the caller releases them once
    the fan-out committed. A busy endpoint's next release is coming anyway.
    """

    claimed: list[Claim]
    pending: list[str]
    throttled: list[str] = field(default_factory=list)


def fan_out_and_claim(
    event_ids: str | Sequence[str],
    *,
    lease_s: float = 30.0,
    claim: int = 0,
    claim_lease_s: float = 60.0,
    now: dt.datetime | None = None,
    before_writing: Callable[[FanOut], None] | None = None,
    settle: Callable[[FanOut], Sequence[tuple[Claim, Outcome]]] | None = None,
    memo: EndpointMemo | None = None,
) -> FanOut:
    """Fan events out, claiming up to `claim` of the new deliveries for their first attempt.

    Claimed deliveries are inserted as `delivering` (attempt 1, leased for
    `claim_lease_s`) in the same transaction that creates them, so the worker
    that fans out can send them at once: no message, no second claim. Only
    endpoints whose breaker is closed are claimed this way; the rest are
    inserted `pending` (leased for `lease_s`) for the caller to publish, and
    the ordinary claim parks or probes them. The claims go to the events in
    the order given.

    Several events (those of one `fan_out` message) share the transaction and
    its statements: one gate, one endpoint query per tenant, one INSERT.

    Exactly one caller fans an event out: deleting its `event_fan_out` row
    is the gate. A repeat (a redelivered message) creates
    nothing for that event and answers its deliveries still pending.

    `before_writing(plan)`, if given, runs inside the transaction as soon as
    the plan is known, before the deliveries are written and committed (the
    worker starts its attempts there). If it raises, nothing is committed;
    if the writing or the commit fails after it ran, undoing what it started
    is the caller's part.

    `settle(plan)`, if given, runs next and answers claimed deliveries whose
    first attempt has already succeeded: they are written already `succeeded`,
    with their attempt, in the same transaction (ops/bench/NOTES.md#settled-
    first-attempts): the row is written once instead of inserted and then
    updated by a recording transaction of its own. Reporting them, once the
    commit succeeded, is the caller's part.

    `memo` remembers the endpoint models built from rows read before; a worker
    passes the one its runtime holds. Without it, each call builds its own.
    """
    memo = memo or EndpointMemo()
    ids = [event_ids] if isinstance(event_ids, str) else list(dict.fromkeys(event_ids))
    if not ids:
        return FanOut([], [])
    now = now or utcnow()
    param = db.obj.param
    gate_sql, endpoints_sql = _fan_out_sql(param)
    claim_until = now + dt.timedelta(seconds=claim_lease_s)
    pending_until = now + dt.timedelta(seconds=lease_s)
    rows: list[dict[str, Any]] = []
    claimed: list[Claim] = []
    waiting: set[str] = set()  # endpoints whose flow holds some of the new deliveries
    with db.atomic():
        opened = _open_gate(gate_sql, ids, param)
        tenants: dict[str, list[Subscriber]] = {}
        for event in (opened[i] for i in ids if i in opened):
            endpoints = tenants.get(event.tenant_id)
            if endpoints is None:
                endpoints = tenants[event.tenant_id] = memo.active(endpoints_sql, event.tenant_id)
            for endpoint, breaker_state, adaptive in _receivers(event, endpoints):
                if endpoint.paused_at is not None:  # its owner resumes it (`engine.replays`)
                    row = new_delivery(event, endpoint.id, now, None, CREATED_PAUSED, 0)
                elif flow.controlled(endpoint, adaptive, now):  # its flow decides when
                    row = new_delivery(event, endpoint.id, now, None, CREATED_THROTTLED, 0)
                    waiting.add(endpoint.id)
                elif len(claimed) < claim and breaker_state in (None, "closed"):
                    row = new_delivery(event, endpoint.id, now, claim_until, CREATED_CLAIMED, 1)
                    # Every column is given: peewee need not compute the defaults first.
                    claimed.append(Claim(Delivery(__no_default__=1, **row), endpoint, event))
                else:
                    row = new_delivery(event, endpoint.id, now, pending_until, CREATED_PENDING, 0)
                rows.append(row)
        repeated = [i for i in ids if i not in opened]
        if repeated:  # a redelivered message: what its first run left unpublished
            still = Delivery.select(Delivery.id).where(
                Delivery.event_id.in_(repeated) & (Delivery.status == PENDING)
            )
            pending = [row.id for row in still]
        else:
            pending = []
        plan = FanOut(
            claimed, [str(row["id"]) for row in rows if row["status"] == PENDING] + pending
        )
        if before_writing is not None:
            before_writing(plan)
        settled = settle(plan) if settle is not None and claimed else ()
        if settled:
            rows, attempts = _settled_rows(rows, settled, now)
            copy_rows(Delivery, rows)
            copy_rows(Attempt, attempts)
        else:
            copy_rows(Delivery, rows)
        plan.throttled.extend(flow.mark_waiting(waiting, now))
    return plan


def _receivers(
    event: Event, endpoints: Sequence[Subscriber]
) -> Iterator[tuple[Endpoint, str | None, EndpointFlow | None]]:
    """The endpoints an event goes to, with their breakers' states and flows: its type, then
    its content.

    The payload is parsed once, and only when an endpoint of the event's type has a filter.
    """
    document = None
    for endpoint, accepts, breaker_state, adaptive in endpoints:
        if not matches(event.event_type, endpoint.event_types):
            continue
        if accepts is not None:
            if document is None:
                document = payload_filter.document(event.event_type, json.loads(event.payload))
            if not accepts(document):
                continue
        yield endpoint, breaker_state, adaptive


def _settled_rows(
    rows: list[dict[str, Any]], settled: Sequence[tuple[Claim, Outcome]], now: dt.datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The deliveries' rows, those whose first attempt succeeded as `succeeded`; their attempts.

    Each row gets the `last_*` columns (COPY takes the same columns for every row).
    """
    states.check(to=SUCCEEDED, from_=(states.DELIVERING,))
    done = {claimed.delivery.id: outcome for claimed, outcome in settled}
    out = []
    for row in rows:
        outcome = done.get(row["id"])
        if outcome is None:
            out.append(
                {**row, "last_attempt_at": None, "last_status_code": None, "last_error": None}
            )
            continue
        out.append(
            {
                **row,
                "status": SUCCEEDED,
                "lease_until": None,
                "last_attempt_at": outcome.started_at,
                "last_status_code": outcome.status_code,
                "last_error": outcome.error_detail,
                "updated_at": now,
            }
        )
    attempts = [attempt_row(claimed, 1, outcome) for claimed, outcome in settled]
    return out, attempts


def _open_gate(gate_sql: str, ids: list[str], param: str) -> dict[str, Event]:
    """Take the events' `event_fan_out` rows; answer the events whose rows this call took."""
    gate = gate_sql.format(", ".join([param] * len(ids)))
    if is_postgres(db.obj):  # the gate reads the events itself (`_fan_out_sql`)
        return {e.id: e for e in Event.raw(gate, *ids)}
    taken = [row[0] for row in db.execute_sql(gate, ids).fetchall()]
    return {e.id: e for e in Event.select().where(Event.id.in_(taken))} if taken else {}


@functools.cache
def _fan_out_sql(param: str) -> tuple[str, str]:
    """The fan-out's two statements, written by hand once (ops/bench/NOTES.md#fan-out-statements).

    The gate (its `{}` filled with one placeholder per event) deletes the
    events' `event_fan_out` rows and answers the events whose rows it took; the second reads a
    tenant's active endpoints, every column in `_ENDPOINT_FIELDS`' order, then
    the state of each one's breaker and what adaptive control holds of its flow.
    """
    if param == "%s":  # PostgreSQL: the DELETE and the read in one statement
        gate = (
            'WITH "gone" AS (DELETE FROM "event_fan_out" WHERE "event_id" IN ({})'
            ' RETURNING "event_id") SELECT "event".* FROM "event"'
            ' JOIN "gone" ON "event"."id" = "gone"."event_id"'
        )
    else:  # SQLite: no DELETE in a WITH; `_open_gate` reads the events after it
        gate = 'DELETE FROM "event_fan_out" WHERE "event_id" IN ({}) RETURNING "event_id"'
    columns = ", ".join(f'"endpoint"."{field.column_name}"' for field in _ENDPOINT_FIELDS)
    endpoints = (
        f'SELECT {columns}, "endpoint_health"."state",'
        ' "endpoint_flow"."concurrency", "endpoint_flow"."paused_until", "endpoint_flow"."held"'
        ' FROM "endpoint"'
        ' LEFT OUTER JOIN "endpoint_health"'
        ' ON "endpoint_health"."endpoint_id" = "endpoint"."id"'
        ' LEFT OUTER JOIN "endpoint_flow"'
        ' ON "endpoint_flow"."endpoint_id" = "endpoint"."id"'
        f' WHERE "endpoint"."tenant_id" = {param} AND "endpoint"."status" = {param}'
        ' AND "endpoint"."deleted_at" IS NULL ORDER BY "endpoint"."id"'
    )
    return gate, endpoints


_ENDPOINT_FIELDS: tuple[Any, ...] = tuple(Endpoint._meta.sorted_fields)
_ID = _ENDPOINT_FIELDS.index(Endpoint._meta.primary_key)
# Past this many endpoints a memo starts over, so memory stays bounded.
ENDPOINT_MEMO_MAX = 10_000


# An active endpoint, its payload filter compiled (None: it has none), its breaker's state,
# and its flow row's adaptive part (None: it has none, `engine.deliveries.flow`).
Subscriber = tuple[Endpoint, Matcher | None, str | None, EndpointFlow | None]


class EndpointMemo:
    """Endpoint models by id, each with the row it was built from; shared by threads.

    A row that reads the same as last time is the same endpoint: its model
    (JSON columns parsed, fields converted) and its compiled payload filter
    are used again instead of built again (ops/bench/NOTES.md#endpoint-memo).
    A changed row builds new ones. The models are only read, never changed.
    """

    def __init__(self, max_entries: int = ENDPOINT_MEMO_MAX) -> None:
        self.max_entries = max_entries
        self._models: dict[str, tuple[tuple[Any, ...], Endpoint, Matcher | None]] = {}

    def active(self, sql: str, tenant_id: str) -> list[Subscriber]:
        """The tenant's active endpoints, each with its filter, its breaker's state and flow.

        The state is None when the endpoint has no breaker yet.
        """
        cursor = db.execute_sql(sql, (tenant_id, endpoint_states.ACTIVE))
        return [
            (*self.built(tuple(row)), state, _adaptive(row[_ID], concurrency, paused, held))
            for *row, state, concurrency, paused, held in cursor.fetchall()
        ]

    def built(self, values: tuple[Any, ...]) -> tuple[Endpoint, Matcher | None]:
        """The model of a row of `_ENDPOINT_FIELDS` and its compiled filter.

        Those built before when the row is the same.
        """
        known = self._models.get(values[_ID])
        if known is not None and known[0] == values:
            return known[1], known[2]
        endpoint = _endpoint_model(values)
        accepts = compiled_filter(endpoint)
        if len(self._models) >= self.max_entries:
            self._models.clear()
        self._models[values[_ID]] = (values, endpoint, accepts)
        return endpoint, accepts


def _adaptive(
    endpoint_id: str, concurrency: Any, paused_until: Any, held: Any
) -> EndpointFlow | None:
    """The part of an endpoint's flow row that bears on a fan-out; None when it bears nothing.

    `held`: its tenant is suspended or being deleted (`flow.set_held`).
    """
    if concurrency is None and paused_until is None and not held:
        return None
    return EndpointFlow(
        endpoint_id=endpoint_id,
        concurrency=concurrency,
        paused_until=EndpointFlow.paused_until.python_value(paused_until),
        held=bool(held),
    )


def compiled_filter(endpoint: Endpoint) -> Matcher | None:
    """The endpoint's payload filter as a predicate; None when it has none.

    A stored filter the API would refuse (written by hand, or by a later
    version) matches nothing: the subscriber asked not to get everything.
    """
    if endpoint.payload_filter is None:
        return None
    try:
        return payload_filter.compile_filter(endpoint.payload_filter)
    except InvalidInputError as exc:
        log.warning("payload_filter_invalid", endpoint_id=endpoint.id, error=str(exc))
        return _match_nothing


def _match_nothing(document: Any) -> bool:
    return False


def _endpoint_model(values: tuple[Any, ...]) -> Endpoint:
    """The model peewee would build from a row of `_ENDPOINT_FIELDS`."""
    data = {
        field.name: value if value is None else field.python_value(value)
        for field, value in zip(_ENDPOINT_FIELDS, values, strict=True)
    }
    endpoint: Any = Endpoint(__no_default__=1, **data)
    endpoint._dirty.clear()  # as read, not changed: a save() would write nothing
    return endpoint


def new_delivery(
    event: Event,
    endpoint_id: str,
    now: dt.datetime,
    lease_until: dt.datetime | None,
    status: str,
    attempts: int,
) -> dict[str, Any]:
    return {
        # Its event's time: the delivery lives in its event's daily partition (migration 15).
        "id": new_id("dlv", now_ms=id_timestamp_ms(event.id)),
        "tenant_id": event.tenant_id,
        "event_id": event.id,
        "endpoint_id": endpoint_id,
        "event_type": event.event_type,
        "status": status,
        "attempts": attempts,
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
    states.move(
        Delivery.id.in_(list(delivery_ids)),
        to=QUEUED,
        from_=(PENDING,),
        lease_until=now + dt.timedelta(seconds=lease_s),
        updated_at=now,
    )
