"""Adaptive concurrency: how many attempts at once an endpoint takes, learnt from its answers.

AIMD, per endpoint, shared by every worker through its `endpoint_flow` row:

- a 429, a 503 or a timeout halves the endpoint's allowed concurrency (not below
  one). An endpoint with no limit yet starts from the attempts it had in flight.
  One window's answers are one signal: an attempt that started before the last
  halving cannot halve again (it was sent under the old limit), so a burst that
  overran the receiver halves the limit once, however slowly its answers arrive;
- a streak of fast successes (each within `adaptive_fast_s`) twice as long as the
  current limit raises it by one, if the endpoint used it (as many in flight as the limit
  when the streak completes): a limit that was never reached says nothing about the
  receiver, and raising it would only delay the next halving. A slow success or a
  failure ends the streak;
- at `max_in_flight`, or at `adaptive_ceiling` without one, the learnt limit is
  lifted: the endpoint is back on the fast path;
- a `Retry-After` on a 429 or 503 pauses the whole endpoint until then
  (`paused_until`), not only the delivery that got it.

`observe` runs inside the transaction that records the attempts, before it moves
any delivery (locks are taken flow rows first, as a claim takes them), and only
for endpoints that sent a signal or already have a learnt limit: a healthy
endpoint costs nothing here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.db.models import EndpointFlow
from engine.deliveries import flow
from engine.deliveries.client import Outcome
from engine.retry import MAX_RETRY_AFTER_S

# Answers that say the receiver is over its capacity.
CONGESTION_STATUSES = frozenset({429, 503})
# A streak of fast successes this many times the current limit raises it by one.
STREAK_PER_STEP = 2
HALVED = "halved"
RAISED = "raised"
LIFTED = "lifted"


def congestion(outcome: Outcome) -> str | None:
    """Why this answer says the receiver is overloaded; None when it does not."""
    if outcome.status_code in CONGESTION_STATUSES:
        return f"answered {outcome.status_code}"
    if outcome.error_class == "timeout":
        return "timed out"
    return None


@dataclass(frozen=True)
class Learnt:
    """An endpoint's adaptive state after some answers."""

    concurrency: int | None
    streak: int
    reason: str | None  # set when `concurrency` changed


def step(
    current: int | None,
    streak: int,
    last_reason: str | None,
    last_changed_at: dt.datetime | None,
    outcomes: Sequence[Outcome],
    *,
    in_flight: int,
    ceiling: int,
    fast_s: float,
    now: dt.datetime,
) -> Learnt:
    """The next adaptive state, from the current one and a group of answers (pure)."""
    halved_at = (
        last_changed_at
        if current is not None and last_reason is not None and last_reason.startswith(HALVED)
        else None
    )
    signals = [(o, congestion(o)) for o in outcomes]
    signal = next(
        (why for o, why in signals if why and (halved_at is None or o.started_at >= halved_at)),
        None,
    )
    if signal is None and any(why for _o, why in signals):
        return Learnt(current, 0, None)  # sent under the old limit: already counted
    if signal is not None:
        base = current if current is not None else max(1, in_flight)
        halved = max(1, base // 2)
        return Learnt(halved, 0, f"{HALVED} from {base} to {halved}: {signal}")
    if current is None:
        return Learnt(None, 0, None)
    fast = [o for o in outcomes if o.success and o.duration_ms <= fast_s * 1000]
    if len(fast) < len(outcomes):
        return Learnt(current, 0, None)
    streak += len(fast)
    if streak < STREAK_PER_STEP * current:
        return Learnt(current, streak, None)
    raised = current + 1
    if raised >= ceiling:
        return Learnt(None, 0, f"{LIFTED} at {ceiling}: {streak} fast successes in a row")
    # A raise that `observe` refuses (the limit was not used) keeps the streak where it is.
    return Learnt(raised, streak, f"{RAISED} from {current} to {raised}: {streak} fast successes")


def _unused_raise(learnt: Learnt, current: int | None, endpoint_id: str, in_flight: Any) -> bool:
    """True when `learnt` raises a limit the endpoint did not reach: it is not raised."""
    if current is None or learnt.reason is None or not learnt.reason.startswith(RAISED):
        return False
    return bool(in_flight(endpoint_id) < current)


def pause(outcomes: Sequence[Outcome], now: dt.datetime) -> tuple[dt.datetime, str] | None:
    """Until when the endpoint's answers asked it to be left alone, and why; None if not."""
    asked = [
        (o.retry_after_s, o.status_code)
        for o in outcomes
        if o.status_code in CONGESTION_STATUSES and o.retry_after_s is not None
    ]
    if not asked:
        return None
    seconds, status = max(asked, key=lambda a: a[0] or 0.0)
    seconds = min(float(seconds or 0.0), MAX_RETRY_AFTER_S)
    if seconds <= 0:
        return None
    return now + dt.timedelta(seconds=seconds), f"Retry-After {seconds:g}s on a {status}"


@dataclass(frozen=True)
class Change:
    """A change of an endpoint's learnt concurrency, for the caller's metrics and logs."""

    endpoint_id: str
    concurrency: int | None
    reason: str


def observe(
    attempts: Sequence[tuple[Any, Outcome]],
    *,
    now: dt.datetime,
    ceiling: int,
    fast_s: float,
    in_flight: Any,
) -> list[Change]:
    """Learn from recorded answers: update the flow rows of the endpoints they concern.

    `attempts` are (claim, outcome) pairs; a claim carries its endpoint and, when its flow
    is controlled, the flow row it was claimed under. `in_flight(endpoint_id)` counts an
    endpoint's attempts in flight (these answers' own included: their deliveries move
    later in the transaction), asked only when a limit is first set or would be raised.
    """
    groups: dict[str, list[tuple[Any, Outcome]]] = {}
    for claimed, outcome in attempts:
        learning = claimed.flow is not None and claimed.flow.concurrency is not None
        if learning or congestion(outcome) is not None:
            groups.setdefault(claimed.endpoint.id, []).append((claimed, outcome))
    if not groups:
        return []
    rows = flow.lock(sorted(groups), now)
    changes = []
    for endpoint_id in sorted(groups):
        pairs = groups[endpoint_id]
        endpoint = pairs[0][0].endpoint
        row = rows[endpoint_id]
        outcomes = [o for _c, o in pairs]
        top = endpoint.max_in_flight if endpoint.max_in_flight is not None else ceiling
        learnt = step(
            row.concurrency,
            row.fast_streak,
            row.concurrency_reason,
            row.concurrency_changed_at,
            outcomes,
            in_flight=in_flight(endpoint_id) if row.concurrency is None else 0,
            ceiling=top,
            fast_s=fast_s,
            now=now,
        )
        if _unused_raise(learnt, row.concurrency, endpoint_id, in_flight):
            learnt = Learnt(row.concurrency, learnt.streak, None)
        streak = 0 if learnt.reason is not None else learnt.streak
        update: dict[str, Any] = {"fast_streak": min(streak, STREAK_PER_STEP * top)}
        if learnt.reason is not None:
            update.update(
                concurrency=learnt.concurrency,
                concurrency_reason=learnt.reason,
                concurrency_changed_at=now,
            )
            changes.append(Change(endpoint_id, learnt.concurrency, learnt.reason))
        paused = pause(outcomes, now)
        if paused is not None and (row.paused_until is None or paused[0] > row.paused_until):
            update.update(paused_until=paused[0], pause_reason=paused[1])
        if update == {"fast_streak": row.fast_streak}:  # nothing changed
            continue
        update["updated_at"] = now
        EndpointFlow.update(**update).where(EndpointFlow.endpoint_id == endpoint_id).execute()
    return changes
