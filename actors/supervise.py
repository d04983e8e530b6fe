"""The `supervise(outcomes)` actor on `hookline.supervise`: outcomes into the breakers.

Runs in `hookline supervisor` alone, one thread, and folds each batch of
attempt outcomes (`actors.outcomes`) into PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from actors.runtime import Runtime
from engine.breakers import store as health
from engine.breakers.state import Policy

log = structlog.get_logger("hookline.supervision")

QUEUE_NAME = "hookline.supervise"
_EPOCH = dt.datetime(1970, 1, 1)


def supervise(rt: Runtime, outcomes: list[list[Any]]) -> None:
    """Fold one batch of attempt outcomes into the endpoints' windows and breakers."""
    observations = [
        health.Observation(
            endpoint_id=str(row[0]),
            success=bool(row[1]),
            at=_EPOCH + dt.timedelta(seconds=float(row[2])),
            status_code=row[3],
            delivery_id=str(row[4]),
            quarantined=bool(row[5]) if len(row) > 5 else False,
        )
        for row in outcomes
    ]
    with rt.database.connection_context():
        emitted = health.fold(observations, policy=Policy.from_settings(rt.settings))
    log.debug("outcomes_supervised", outcomes=len(observations), alerts=len(emitted))
