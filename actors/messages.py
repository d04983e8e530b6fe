"""Messages between Hookline's processes: typed records with a version, sent as JSON objects.

`OutcomeRecord` is one attempt's outcome as a worker reports it to the
supervisor (`supervise`). A reader refuses a version it does not know
(`UnknownVersionError`) rather than guess at its fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from engine.deliveries.client import Outcome
from engine.retry import Decision

OUTCOME_VERSION = 1
_EPOCH = dt.datetime(1970, 1, 1)


class UnknownVersionError(ValueError):
    """A record of a version this process does not read."""

    def __init__(self, version: object) -> None:
        super().__init__(f"unknown record version {version!r}")
        self.version = version


@dataclass(frozen=True)
class OutcomeRecord:
    """One attempt's outcome, for the endpoint's breaker."""

    endpoint_id: str
    delivery_id: str
    success: bool
    at_s: float  # when the attempt started, seconds since the epoch (UTC)
    status_code: int | None
    quarantined: bool  # the attempt ended the delivery without success
    version: int = OUTCOME_VERSION

    @classmethod
    def of(
        cls, endpoint_id: str, delivery_id: str, outcome: Outcome, decision: Decision
    ) -> OutcomeRecord:
        """The record of one recorded attempt and what it decided."""
        return cls(
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            success=outcome.success,
            at_s=(outcome.started_at - _EPOCH).total_seconds(),
            status_code=outcome.status_code,
            quarantined=decision.action in ("quarantine", "disable"),
        )

    @property
    def at(self) -> dt.datetime:
        """When the attempt started (naive UTC, as the database stores it)."""
        return _EPOCH + dt.timedelta(seconds=self.at_s)

    def to_json(self) -> dict[str, Any]:
        """The record as the message carries it."""
        # Field by field: `dataclasses.asdict` deep-copies every value, and a worker
        # reports one record per attempt (ops/bench/NOTES.md#uvloop-and-the-worker-s-small-costs).
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_json(cls, data: Any) -> OutcomeRecord:
        """Read a record from a message.

        Raises:
            UnknownVersionError: the record is of a version this process does not read.
            ValueError: the record is malformed.
        """
        if isinstance(data, list):
            return cls._from_version_0(data)
        if not isinstance(data, dict):
            raise ValueError(f"an outcome record is an object, not {type(data).__name__}")
        if data.get("version") != OUTCOME_VERSION:
            raise UnknownVersionError(data.get("version"))
        try:
            return cls(
                endpoint_id=str(data["endpoint_id"]),
                delivery_id=str(data["delivery_id"]),
                success=bool(data["success"]),
                at_s=float(data["at_s"]),
                status_code=_status(data["status_code"]),
                quarantined=bool(data["quarantined"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a malformed outcome record: {exc!r}") from None

    @classmethod
    def _from_version_0(cls, row: list[Any]) -> OutcomeRecord:
        """Version 0: the positional row workers sent before typed records.

        `[endpoint_id, success, at_s, status_code, delivery_id(, quarantined)]`. A
        supervise queue may still hold such messages after an upgrade: read
        them, as the supervisor of that version did.
        """
        if not 5 <= len(row) <= 6:
            raise ValueError(f"a version 0 outcome row has 5 or 6 fields, not {len(row)}")
        try:
            return cls(
                endpoint_id=str(row[0]),
                delivery_id=str(row[4]),
                success=bool(row[1]),
                at_s=float(row[2]),
                status_code=_status(row[3]),
                quarantined=bool(row[5]) if len(row) > 5 else False,
                version=0,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a malformed version 0 outcome row: {exc!r}") from None


_RECORD_FIELDS = tuple(spec.name for spec in dataclasses.fields(OutcomeRecord))


def _status(value: Any) -> int | None:
    return None if value is None else int(value)
