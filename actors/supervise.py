"""The `supervise(outcomes)` actor on `hookline.supervise`: outcomes into the breakers.

Runs in `hookline supervisor`, one thread per process, and folds each batch of
attempt outcomes (`actors.messages.OutcomeRecord`, reported by
`actors.outcomes`) into PostgreSQL, once per message: two or more supervisors
may consume the queue, and a message redelivered after its supervisor died
between the fold's commit and the ack is recognised by its dramatiq message id
(the same on every delivery of it) and skipped.
"""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from actors.messages import OutcomeRecord, UnknownVersionError
from actors.runtime import Runtime
from engine.breakers import store as health
from engine.breakers.state import Policy

log = structlog.get_logger("hookline.supervision")

QUEUE_NAME = "hookline.supervise"


def supervise(rt: Runtime, outcomes: list[Any]) -> None:
    """Fold one batch of attempt outcomes into the endpoints' windows and breakers.

    Records it cannot read (an unknown version, a malformed one) are refused
    with one log line for the batch and the message is acked: retrying would
    not make them readable. A message folded before is skipped whole.
    """
    records = _read(outcomes)
    observations = [
        health.Observation(
            endpoint_id=record.endpoint_id,
            success=record.success,
            at=record.at,
            status_code=record.status_code,
            delivery_id=record.delivery_id,
            quarantined=record.quarantined,
        )
        for record in records
    ]
    message = CurrentMessage.get_current_message()
    message_id = message.message_id if message is not None else None
    with rt.database.connection_context():
        emitted = health.fold(
            observations, policy=Policy.from_settings(rt.settings), message_id=message_id
        )
    if emitted is None:
        log.info("outcomes_redelivered", message_id=message_id, outcomes=len(observations))
        return
    log.debug("outcomes_supervised", outcomes=len(observations), alerts=len(emitted))


def _read(outcomes: list[Any]) -> list[OutcomeRecord]:
    """The records of a batch that this process can read; one log line for the rest."""
    records: list[OutcomeRecord] = []
    versions: set[str] = set()
    errors: list[str] = []
    for data in outcomes:
        try:
            records.append(OutcomeRecord.from_json(data))
        except UnknownVersionError as exc:
            versions.add(repr(exc.version))
        except ValueError as exc:
            errors.append(str(exc))
    refused = len(outcomes) - len(records)
    if refused:
        log.error(
            "outcomes_refused",
            refused=refused,
            supervised=len(records),
            unknown_versions=sorted(versions),
            malformed=len(errors),
            first_error=errors[0][:200] if errors else None,
        )
    return records
