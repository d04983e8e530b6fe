"""Each API process's copy of the tenants' catalogs: compiled validators, strict mode.

Ingest asks `CatalogCache.fresh(tenant_id)` for the tenant's `Snapshot`, a
dictionary lookup on the event loop; only when it has none younger than
`max_age_s` (2 s by default, `HOOKLINE_EVENT_TYPES_CACHE_S`) does the request
go to a thread for `load`, which reads one small row, `tenant`'s
`event_types_generation` and `strict_event_types`, and only when that
generation moved, the tenant's types (compiling the schemas that changed).
What this bounds:

- A change of a catalog or of strict mode, made through any API process on
  any host, is in force on every API process within `max_age_s` plus one
  read: every change of a catalog raises the generation in its own
  transaction (`engine.events.catalog`), and the generation is read before
  the types, so a snapshot is never newer in its generation than in its types.
- The process that made the change `forget`s the tenant at once: it sees its
  own changes on the next request.
- A tenant with no types, the common case, costs the same as one with: the
  empty snapshot is cached too, so ingest does at most one read per tenant
  per `max_age_s` per process, never one per request.
- At most `max_tenants` snapshots are kept; the oldest goes first.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import jsonschema_rs

from engine.db.models import EventType, Tenant
from engine.errors import InvalidInputError
from engine.events.payload_schema import (
    SchemaViolationError,
    compile_schema,
    failed,
    violations,
)

__all__ = ["CatalogCache", "CatalogReader", "DatabaseReader", "Snapshot", "StoredType"]

DEFAULT_MAX_AGE_S = 2.0
_LOCKS = 64


@dataclass(frozen=True)
class StoredType:
    """What ingest needs of one catalog row."""

    id: str
    name: str
    version: int
    archived: bool
    schema: str | None  # JSON text


@dataclass(frozen=True)
class _Entry:
    version: int
    archived: bool
    validator: jsonschema_rs.Draft202012Validator | None
    id: str


@dataclass(frozen=True)
class Snapshot:
    """One tenant's catalog as ingest judges events against it."""

    generation: int
    strict: bool
    checked_at: float
    types: Mapping[str, _Entry] = field(default_factory=dict)

    def judge(self, event_type: str, payload: Any) -> int | None:
        """The schema version the payload passes, or None when its type has no schema.

        Raises:
            InvalidInputError: strict mode, and the type is unregistered or archived.
            SchemaViolationError: the payload breaks its type's schema (every violation listed).
        """
        entry = self.types.get(event_type)
        if entry is None or entry.archived:
            if self.strict:
                why = "is not a registered" if entry is None else "is an archived"
                raise InvalidInputError(
                    "event_type", f"{why} event type, and this tenant accepts only registered ones"
                )
            return None
        validator = entry.validator
        if validator is None:
            return None
        try:
            if validator.is_valid(payload):
                return entry.version
        except BaseException as exc:
            if not failed(exc):
                raise  # `violations` says what went wrong otherwise
        raise SchemaViolationError(event_type, entry.version, violations(validator, payload))


class CatalogReader(Protocol):
    """Where a cache reads catalogs from (the database; a fake in the unit tests)."""

    def generation(self, tenant_id: str) -> tuple[int, bool]:
        """The tenant's catalog generation and strict mode ((0, False) for no tenant)."""

    def types(self, tenant_id: str) -> list[StoredType]:
        """Every event type of the tenant, archived ones too."""


class DatabaseReader:
    """Reads catalogs with the bound database (a connection must be open)."""

    def generation(self, tenant_id: str) -> tuple[int, bool]:
        row = (
            Tenant.select(Tenant.event_types_generation, Tenant.strict_event_types)
            .where(Tenant.id == tenant_id)
            .tuples()
            .first()
        )
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def types(self, tenant_id: str) -> list[StoredType]:
        query = EventType.select(
            EventType.id, EventType.name, EventType.version, EventType.archived, EventType.schema
        ).where(EventType.tenant_id == tenant_id)
        rows = cast("list[tuple[str, str, int, bool, str | None]]", list(query.tuples()))
        return [StoredType(id_, name, int(v), bool(a), schema) for id_, name, v, a, schema in rows]


class CatalogCache:
    """Snapshots of tenants' catalogs, each trusted for `max_age_s`; thread-safe."""

    def __init__(
        self,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        *,
        reader: CatalogReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tenants: int = 10_000,
    ) -> None:
        self.max_age_s = max_age_s
        self.reader = reader or DatabaseReader()
        self.clock = clock
        self.max_tenants = max_tenants
        self._snapshots: dict[str, Snapshot] = {}
        self._locks = [threading.Lock() for _ in range(_LOCKS)]
        self._keeping = threading.Lock()

    def fresh(self, tenant_id: str) -> Snapshot | None:
        """The tenant's snapshot if it was checked within `max_age_s`; never reads."""
        snapshot = self._snapshots.get(tenant_id)
        if snapshot is None or self.clock() - snapshot.checked_at >= self.max_age_s:
            return None
        return snapshot

    def load(self, tenant_id: str) -> Snapshot:
        """A fresh snapshot: checked against the database now unless another thread just did.

        Reads the generation first, then (if it moved) the types.
        """
        with self._locks[hash(tenant_id) % _LOCKS]:
            snapshot = self.fresh(tenant_id)
            if snapshot is not None:
                return snapshot
            checked_at = self.clock()
            generation, strict = self.reader.generation(tenant_id)
            old = self._snapshots.get(tenant_id)
            if old is not None and old.generation == generation:
                types = old.types
            else:
                types = _compiled(self.reader.types(tenant_id), old)
            snapshot = Snapshot(generation, strict, checked_at, types)
            self._keep(tenant_id, snapshot)
            return snapshot

    def snapshot(self, tenant_id: str) -> Snapshot:
        """`fresh`, or else `load` (which reads: call it where blocking is allowed)."""
        return self.fresh(tenant_id) or self.load(tenant_id)

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's snapshot: this process changed its catalog or its strict mode."""
        self._snapshots.pop(tenant_id, None)

    def _keep(self, tenant_id: str, snapshot: Snapshot) -> None:
        with self._keeping:
            self._snapshots.pop(tenant_id, None)
            while len(self._snapshots) >= self.max_tenants:
                # Insertion order: the first tenant is the one checked longest ago.
                self._snapshots.pop(next(iter(self._snapshots)), None)
            self._snapshots[tenant_id] = snapshot


def _compiled(stored: list[StoredType], old: Snapshot | None) -> dict[str, _Entry]:
    """Entries for the stored types, reusing the validators of those whose schema is unchanged."""
    before = old.types if old is not None else {}
    entries: dict[str, _Entry] = {}
    for row in stored:
        previous = before.get(row.name)
        if previous is not None and (previous.id, previous.version) == (row.id, row.version):
            validator = previous.validator
        else:
            validator = None if row.schema is None else compile_schema(json.loads(row.schema))
        entries[row.name] = _Entry(row.version, row.archived, validator, row.id)
    return entries
