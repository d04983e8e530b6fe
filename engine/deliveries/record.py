"""Deliveries: one event to one endpoint, from its claim to its last attempt.

`engine.deliveries.fanout` creates them. Every state change is a conditional update
through `engine.deliveries.states`, so duplicate messages, crashed workers and late
answers can never move a delivery backwards.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from peewee import JOIN, IntegrityError

from engine import signing
from engine.breakers import store as health
from engine.db.connect import copy_rows, insert_rows
from engine.db.models import (
    Attempt,
    Delivery,
    Endpoint,
    EndpointFlow,
    EndpointHealth,
    Event,
    db,
    utcnow,
)
from engine.deliveries import flow, lost, slots, states
from engine.deliveries.client import Outcome, Request
from engine.deliveries.states import (
    CANCELLED,
    CLAIMABLE,
    DELIVERING,
    PARKED,
    PAUSED,
    QUARANTINED,
    SCHEDULED,
    SUCCEEDED,
)
from engine.endpoints import receiver_auth, transforms
from engine.endpoints import secrets as endpoint_secrets
from engine.endpoints import states as endpoint_states
from engine.ids import new_id
from engine.retry import Decision
from engine.sealed_fields import open_headers
from engine.secretbox import SecretBox


@dataclass(frozen=True)
class Claim:
    """A delivery a worker now holds, with what it needs to make the attempt."""

    delivery: Delivery
    endpoint: Endpoint
    event: Event
    # The body a transform made for this attempt (`with_body`); None: the standard envelope.
    body: bytes | None = None
    # The endpoint's flow row as the claim read it, when its flow is controlled (`flow`).
    flow: EndpointFlow | None = None
    # When its rate lets it be sent (`engine.deliveries.slots`); None: at once.
    slot_at: dt.datetime | None = None


def claim(delivery_id: str, *, lease_s: float) -> Claim | None:
    """Take one delivery for one attempt, or None if it is not ours to attempt now."""
    claimed = claim_many([delivery_id], lease_s=lease_s)
    return claimed[0] if claimed else None


def claim_many(
    delivery_ids: Sequence[str],
    *,
    lease_s: float,
    released: bool = False,
    max_lost: int | None = None,
) -> list[Claim]:
    """Take deliveries for one attempt each; answer those that are ours to attempt now.

    `lease_s` must outlive the attempt: once it passes, the scheduler hands the
    delivery to another worker. A delivery whose endpoint was deleted (or
    awaits verification) is cancelled. One whose endpoint is disabled, or
    whose breaker is open, is parked without spending an attempt, so that the
    breaker closing or `enable` with replay can release it (cancelling would
    lose it); a half-open breaker lets exactly one probe through. One whose
    endpoint is paused waits as `paused` until its owner resumes it. One whose
    endpoint's flow is controlled (`engine.deliveries.flow`) waits as `throttled`,
    unless `released`: its flow's release paid for it, and it is taken.

    A `delivering` row whose lease ran out is a claim that died with its worker; with
    `max_lost` such claims already (`engine.deliveries.lost`) it is not taken again,
    so a redelivered message cannot send a poison delivery once more before the
    scheduler quarantines it.

    Two round trips whatever the count (two more to hold what waits for its flow):
    one SELECT joins each delivery to its endpoint, event, breaker and flow; one
    conditional UPDATE takes the admitted ones
    and answers (RETURNING) which it took. A delivery another worker took in
    between is simply not returned.
    """
    if not delivery_ids:
        return []
    now = utcnow()
    claimable = states.claimable(now)
    rows = _claim_rows(delivery_ids, claimable, max_lost)
    admitted, probes = _admit(rows, claimable, now)
    if not admitted:
        return []
    flows = {
        d.id: flow.joined(d) or EndpointFlow(endpoint_id=d.endpoint_id)
        for d in admitted.values()
        if flow.controlled(d.endpoint_row, flow.joined(d), now)
    }
    if flows and not released:  # their flow decides when: they wait for its release
        held = list(flows)
        flow.hold(held, now)
        flow.mark_waiting({admitted[i].endpoint_id for i in held}, now)
        for delivery_id in held:
            admitted.pop(delivery_id)
            if delivery_id in probes:
                health.give_back_probe(probes.pop(delivery_id), delivery_id)
        flows = {}
    if not admitted:
        return []
    claims = _take(admitted, probes, delivery_ids, claimable, now, lease_s, flows)
    if released and any(c.delivery.next_attempt_at for c in claims):
        # Its release gave it a slot on the database's clock: on this host's, it is that
        # slot plus how far this host's clock is ahead (`flow.database_now`).
        ahead = flow.host_ahead()
        claims = [
            replace(c, slot_at=c.delivery.next_attempt_at + ahead)
            if c.delivery.next_attempt_at
            else c
            for c in claims
        ]
    return claims


def _admit(rows: Any, claimable: Any, now: dt.datetime) -> tuple[dict[str, Any], dict[str, str]]:
    """The deliveries that may be attempted, and the half-open probes among them.

    The rest move now: cancelled (endpoint gone or unverified), paused (endpoint
    paused) or parked (endpoint disabled, breaker open).
    """
    admitted: dict[str, Any] = {}  # deliveries with their joined rows
    probes: dict[str, str] = {}  # delivery id -> endpoint id, for half-open probes
    parked: list[str] = []
    paused: list[str] = []
    for delivery in list(rows):
        endpoint = delivery.endpoint_row
        if endpoint.deleted_at is not None or endpoint.status not in (
            endpoint_states.ACTIVE,
            endpoint_states.DISABLED,
        ):
            reason = endpoint.disabled_reason or "endpoint is not active"
            states.move(
                (Delivery.id == delivery.id) & claimable,
                to=CANCELLED,
                from_=CLAIMABLE,
                lease_until=None,
                last_error=reason,
                updated_at=now,
            )
            continue
        if endpoint.paused_at is not None:
            paused.append(delivery.id)
            continue
        state = getattr(getattr(delivery, "health_row", None), "state", None)
        if endpoint.status == endpoint_states.DISABLED or not health.admit(
            endpoint.id, delivery.id, state, now=now
        ):
            parked.append(delivery.id)
            continue
        if state not in (None, "closed"):
            probes[delivery.id] = endpoint.id
        admitted[delivery.id] = delivery
    for held, to in ((parked, PARKED), (paused, PAUSED)):
        if held:
            states.move(
                Delivery.id.in_(held) & claimable,
                to=to,
                from_=CLAIMABLE,
                lease_until=None,
                next_attempt_at=None,
                updated_at=now,
            )
    return admitted, probes


def _claim_rows(delivery_ids: Sequence[str], claimable: Any, max_lost: int | None) -> Any:
    """The claimable deliveries asked for, each joined to its endpoint, event, breaker and flow."""
    rows: Any = (
        Delivery.select(Delivery, Endpoint, Event, EndpointHealth.state, EndpointFlow)
        .join(Endpoint, on=(Endpoint.id == Delivery.endpoint_id), attr="endpoint_row")
        .switch(Delivery)
        .join(Event, on=(Event.id == Delivery.event_id), attr="event_row")
        .switch(Delivery)
        .join(
            EndpointHealth,
            JOIN.LEFT_OUTER,
            on=(EndpointHealth.endpoint_id == Delivery.endpoint_id),
            attr="health_row",
        )
        .switch(Delivery)
        .join(
            EndpointFlow,
            JOIN.LEFT_OUTER,
            on=(EndpointFlow.endpoint_id == Delivery.endpoint_id),
            attr="flow_row",
        )
        .where(Delivery.id.in_(list(dict.fromkeys(delivery_ids))) & claimable)
    )
    if max_lost is not None:
        rows = rows.where((Delivery.status != DELIVERING) | (lost.lost_attempts() < max_lost))
    return rows


def _take(
    admitted: dict[str, Any],
    probes: dict[str, str],
    delivery_ids: Sequence[str],
    claimable: Any,
    now: dt.datetime,
    lease_s: float,
    flows: dict[str, EndpointFlow],
) -> list[Claim]:
    """Take the admitted deliveries in one conditional UPDATE; their claims, in the order asked."""
    lease_until = now + dt.timedelta(seconds=lease_s)
    taken = (
        states.update(
            Delivery.id.in_(list(admitted)) & claimable,
            to=DELIVERING,
            from_=CLAIMABLE,
            attempts=Delivery.attempts + 1,
            lease_until=lease_until,
            updated_at=now,
        )
        .returning(Delivery.id, Delivery.attempts)
        .execute()
    )
    claims = []
    for row in taken:
        delivery = admitted.pop(row.id)
        delivery.status, delivery.attempts, delivery.lease_until = (
            DELIVERING,
            row.attempts,
            lease_until,
        )
        claims.append(
            Claim(
                delivery,
                delivery.endpoint_row,
                delivery.event_row,
                flow=flows.get(delivery.id),
            )
        )
    for delivery_id in admitted:  # taken by another worker in between
        if delivery_id in probes:
            health.give_back_probe(probes[delivery_id], delivery_id)
    order: dict[str, int] = {}
    for n, delivery_id in enumerate(delivery_ids):
        order.setdefault(delivery_id, n)
    claims.sort(key=lambda c: order.get(c.delivery.id, 0))
    return claims


def envelope(event: Event) -> bytes:
    """The body every endpoint of an event receives: type, timestamp and data, as JSON.

    An endpoint with a transform receives `transformed` instead.
    """
    sent_at = transforms.sent_at(event.created_at)
    # The payload is stored as compact JSON text; the envelope is joined around it as is.
    return (
        f'{{"type":{json.dumps(event.event_type)},"timestamp":"{sent_at}",'
        f'"data":{event.payload}}}'.encode()
    )


def transformed(claimed: Claim, *, max_bytes: int, data: Any = None) -> Claim:
    """The claim with the body its endpoint's transform makes; as it is without a transform.

    `data` is the event's payload already parsed, shared among the event's deliveries.

    Raises:
        TransformError: the transform's result cannot be sent (null, a scalar, too large).
    """
    transform = claimed.endpoint.transform
    if not transform:
        return claimed
    doc = transforms.document(claimed.event, claimed.endpoint, data)
    return replace(claimed, body=transforms.render(transform, doc, max_bytes=max_bytes))


def build_request(
    claimed: Claim,
    *,
    user_agent: str,
    timestamp: int,
    box: SecretBox,
    body: bytes | None = None,
) -> Request:
    """The signed POST for a claimed delivery (Standard Webhooks headers).

    Every live secret signs: during a rotation's grace period, the old one too.
    `body` is the event's `envelope`, when the caller already has it (a fan-out
    shares one among all its deliveries); a claim's own (transformed) body wins.
    `webhook-id` is the event's id either way.

    Raises:
        CryptoError: the endpoint's secret or headers do not decrypt with the configured keys.
    """
    event = claimed.event
    if claimed.body is not None:
        body = claimed.body
    elif body is None:
        body = envelope(event)
    endpoint = claimed.endpoint
    headers = open_headers(endpoint.headers, box, endpoint.id)
    signers = endpoint_secrets.signing_secrets(endpoint, box)
    headers.update(signing.webhook_headers(signers, event.id, timestamp, body))
    headers["content-type"] = "application/json"
    headers["user-agent"] = user_agent
    proof = receiver_auth.credentials(endpoint.receiver_auth, box, endpoint.id)
    if proof.authorization is not None:  # over any custom Authorization header
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["authorization"] = proof.authorization
    late_s = slots.LATE_S
    if claimed.slot_at is not None and endpoint.rate_limit_per_s:
        late_s = slots.late_s(endpoint.rate_limit_per_s)
    # A replay lane's slot (an endpoint without a rate of its own): the least lateness.
    return Request(
        endpoint.url,
        headers,
        body,
        slot_at=claimed.slot_at,
        slot_late_s=late_s,
        grant=proof.grant,
        tls=proof.tls,
    )


# What follows an attempt, decided at the recording transaction's time: the caller's
# delivery policy, over the pure `engine.retry.decide`.
Decide = Callable[[Claim, Outcome, dt.datetime], Decision]
# What the endpoints' answers teach their flow (`engine.deliveries.adaptive`), run first in
# the recording transaction.
Learn = Callable[[Sequence[tuple[Claim, Outcome]], dt.datetime], object]


def record(claimed: Claim, outcome: Outcome, *, decide: Decide) -> Decision:
    """Store one attempt and the delivery's next state in one transaction."""
    return record_many([(claimed, outcome)], decide=decide)[0]


def record_many(
    attempts: Sequence[tuple[Claim, Outcome]], *, decide: Decide, learn: Learn | None = None
) -> list[Decision]:
    """Store attempts and their deliveries' next states in one transaction.

    Answers each attempt's decision, in order. A delivery moves only if it is
    still `delivering` on the attempt recorded here: a late answer after the
    lease passed to another worker keeps its attempt row but moves nothing.
    Successes (the common case) move in one UPDATE whose `last_*` columns are
    read from the attempt rows just inserted; retries and quarantines, whose
    times and reasons differ row by row, move one UPDATE each. `learn`, if given, runs
    first in the same transaction.
    """
    now = utcnow()
    decisions = [decide(claimed, outcome, now) for claimed, outcome in attempts]
    succeeded = [
        claimed.delivery.id
        for (claimed, _outcome), decision in zip(attempts, decisions, strict=True)
        if decision.action == "succeed"
    ]
    rows = [
        attempt_row(claimed, claimed.delivery.attempts, outcome) for claimed, outcome in attempts
    ]

    def store(*, again: bool) -> None:
        with db.atomic():
            if learn is not None:
                learn(attempts, now)
            if again:
                insert_rows(Attempt, rows, skip_conflicts=True)
            else:
                copy_rows(Attempt, rows)
            if succeeded:
                _mark_succeeded(succeeded, now)
            for (claimed, outcome), decision in zip(attempts, decisions, strict=True):
                if decision.action != "succeed":
                    _move_failed(claimed, outcome, decision, now)

    try:
        store(again=False)
    except IntegrityError:
        # Some attempt is stored already: a group recorded again after the answer to its
        # commit was lost. The rest go in beside it; the stored one moves nothing twice.
        store(again=True)
    return decisions


def _mark_succeeded(delivery_ids: list[str], now: dt.datetime) -> None:
    """Move deliveries whose recorded attempt succeeded, in one statement.

    Each takes its `last_*` columns from its current attempt, and only if that
    attempt is a success: a late success of an earlier attempt, recorded in
    the same group as a failed current one, moves nothing here. Written once
    by hand, because peewee's compilation of it cost as much as the rest of the
    recording (ops/bench/NOTES.md#success-recorded-by-hand-written-update). Its
    states still come from the transition table, checked on every call.
    """
    sources = states.check(to=SUCCEEDED, from_=(DELIVERING,))
    param = db.obj.param
    sql = _MARK_SUCCEEDED.format(
        param=param,
        ids=", ".join([param] * len(delivery_ids)),
        sources=", ".join([param] * len(sources)),
    )
    db.execute_sql(sql, [SUCCEEDED, Delivery.updated_at.db_value(now), *delivery_ids, *sources])


_MARK_SUCCEEDED = (
    'UPDATE "delivery" SET "status" = {param}, "lease_until" = NULL,'
    ' "next_attempt_at" = NULL, "updated_at" = {param},'
    ' "last_attempt_at" = "mine"."started_at", "last_status_code" = "mine"."status_code",'
    ' "last_error" = "mine"."error_detail"'
    ' FROM "attempt" AS "mine"'
    ' WHERE "delivery"."id" IN ({ids}) AND "delivery"."status" IN ({sources})'
    ' AND "mine"."delivery_id" = "delivery"."id" AND "mine"."number" = "delivery"."attempts"'
    ' AND "mine"."outcome" = \'success\''
)


def _move_failed(claimed: Claim, outcome: Outcome, decision: Decision, now: dt.datetime) -> None:
    """Schedule the retry, or quarantine, one delivery whose attempt failed."""
    delivery = claimed.delivery
    changes: dict[str, object] = {
        "lease_until": None,
        "last_attempt_at": outcome.started_at,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error_detail,
        "updated_at": now,
        "next_attempt_at": None,
    }
    if decision.action == "retry":
        to = SCHEDULED
        changes["next_attempt_at"] = now + dt.timedelta(seconds=decision.delay_s or 0)
    else:
        to = QUARANTINED
        changes["quarantine_reason"] = decision.reason
        changes["quarantined_at"] = now
    states.move(
        (Delivery.id == delivery.id) & (Delivery.attempts == delivery.attempts),
        to=to,
        from_=(DELIVERING,),
        **changes,
    )
    if decision.action == "disable":
        _disable_gone(claimed, decision.reason or "endpoint answered 410 Gone", now)


def _disable_gone(claimed: Claim, reason: str, now: dt.datetime) -> None:
    """Disable the endpoint that answered 410 Gone (one `endpoint.disabled` alert)."""
    endpoint = claimed.endpoint
    row = EndpointHealth.get_or_none(EndpointHealth.endpoint_id == endpoint.id)
    endpoint_states.disable(
        endpoint,
        reason,
        breaker=health.to_breaker(row),
        dedup=f"gone:{claimed.delivery.id}",
        now=now,
    )


def attempt_row(claimed: Claim, number: int, outcome: Outcome) -> dict[str, object]:
    """The `attempt` row of a delivery's attempt `number`, as COPY and INSERT take it."""
    return {
        "id": new_id("att"),
        "tenant_id": claimed.delivery.tenant_id,
        "delivery_id": claimed.delivery.id,
        "number": number,
        "started_at": outcome.started_at,
        "duration_ms": round(outcome.duration_ms, 3),
        "status_code": outcome.status_code,
        "outcome": "success" if outcome.success else "failure",
        "error_class": outcome.error_class,
        "error_detail": outcome.error_detail,
        "response_body": outcome.response_body,
        "response_body_truncated": outcome.response_body_truncated,
        "request_body": None if claimed.body is None else claimed.body.decode(),
        "replay_id": claimed.delivery.replay_id,
    }
