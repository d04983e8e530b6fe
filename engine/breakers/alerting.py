"""What the breakers tell endpoint owners: an alert of record with the breaker's facts.

Each alert goes to `engine.alerts.outbox`, keyed by the breaker's transition, so
a state change is announced once however often it is observed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.alerts.outbox import emit, stamp
from engine.breakers import state as breaker
from engine.breakers.state import Breaker, Policy, Window
from engine.db.models import Endpoint


def about(
    endpoint: Endpoint,
    kind: str,
    state: Breaker,
    window: Window | None,
    policy: Policy | None,
    now: dt.datetime,
    *,
    dedup: str | None = None,
    **extra: Any,
) -> str | None:
    """Emit an alert about an endpoint with its breaker's facts, keyed by its transition."""
    facts: dict[str, Any] = {
        "endpoint_id": endpoint.id,
        "endpoint_url": endpoint.url,
        "tenant_id": endpoint.tenant_id,
        "state": state.state,
        "failure_rate": round(window.failure_rate, 4) if window else None,
        "window_attempts": window.attempts if window else None,
        "consecutive_failures": state.consecutive_failures,
        "opened_at": stamp(state.outage_started_at),
        "disables_at": stamp(breaker.disables_at(state, policy)) if policy else None,
        "occurred_at": stamp(now),
        **extra,
    }
    return emit(
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        kind=kind,
        dedup=dedup or f"t{state.transition}",
        facts=facts,
        now=now,
    )
