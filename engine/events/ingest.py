"""Events: accepted once per idempotency key, committed before they are acknowledged."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import peewee
import structlog

from engine.db.batching import BackgroundCommit, GroupCommit
from engine.db.connect import copy_rows, insert_rows
from engine.db.models import Delivery, Event, EventKey, db, utcnow
from engine.db.pages import Page, paginate
from engine.errors import InvalidInputError, NotFoundError
from engine.events.types import EVENT_TYPE_PATTERN, is_valid_event_type
from engine.ids import new_id

log = structlog.get_logger("hookline.events")

# Publishes `fan_out` for new events' ids, and never raises: a failure is the callee's to
# log, and the fan-out lease has the scheduler publish them later.
Announce = Callable[[list[str]], None]


def encode_payload(payload: Any) -> str:
    """The compact JSON text stored and sent for a payload."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# A new event's row, and what announces it once committed.
Submission = tuple[dict[str, Any], Announce | None]
# One event of a batch: its event type, payload and idempotency key (or None).
BatchItem = tuple[str, Any, str | None]


class Accepted(NamedTuple):
    """A batch item's event: its id, and whether this batch created it."""

    id: str
    created: bool


class EventStore:
    """Stores events; those without a key that requests submit together share one INSERT.

    Holds the process's group commits of event inserts: the API's composition
    root (`api.app.create_app`) builds one and hands it to the events resource.
    """

    def __init__(self) -> None:
        # Events without an idempotency key, from the request threads of this process.
        self._from_threads: GroupCommit[Submission, Exception | None] = GroupCommit(
            _insert_together, then=_announce_inserted
        )
        # The same, from coroutines (the API's event loop); its thread starts on first use.
        self._from_loops: BackgroundCommit[Submission, Exception | None] = BackgroundCommit(
            _insert_connected, then=_announce_inserted, name="event-inserts"
        )

    def ingest_event(
        self,
        tenant_id: str,
        event_type: str,
        payload: Any,
        idempotency_key: str | None,
        *,
        fan_out_lease_s: float,
        announce: Announce | None = None,
        schema_version: int | None = None,
    ) -> tuple[Event, bool]:
        """Store an event; answer it and whether it is new.

        A repeated idempotency key answers the first event and stores nothing.
        A new event is passed to `announce` once its row is committed, before
        this returns. Events without a key that concurrent requests store
        together are announced together too, by whichever request leads their
        INSERT: one `fan_out` message can carry them all. Inside a caller's
        transaction nothing is announced (a worker would not see the row yet):
        the caller publishes after its commit, or the fan-out lease has the
        scheduler do it. `schema_version` is the version of its type's schema the
        payload passed (`engine.events.catalog_cache`), recorded with it.

        Raises:
            InvalidInputError: the event type is not a full match of its pattern.
        """
        row = _new_row(
            tenant_id, event_type, payload, idempotency_key, fan_out_lease_s, schema_version
        )
        if idempotency_key is None and not db.in_transaction():
            failure = self._from_threads.submit((row, announce))
            if failure is not None:
                raise failure
            return Event(**row), True
        if idempotency_key is None:
            # One statement, committed on its own (the connection is in autocommit mode): one
            # round trip where BEGIN, INSERT and COMMIT took three, and no peewee SQL building.
            insert_rows(Event, [row])
            taken = {}
        else:
            taken = _store_keyed(tenant_id, [row])
        if not taken:
            if announce is not None and not db.in_transaction():
                _announce_quietly(announce, [str(row["id"])])
            return Event(**row), True
        return Event.get(Event.id == taken[row["id"]]), False

    async def ingest_unkeyed(
        self,
        tenant_id: str,
        event_type: str,
        payload: Any,
        *,
        fan_out_lease_s: float,
        announce: Announce | None = None,
        schema_version: int | None = None,
    ) -> Event:
        """Store an event without an idempotency key, from a coroutine; answer it.

        `ingest_event` for an event loop: the loop never blocks. The rows of
        every request in flight are INSERTed together and then announced
        together, on a thread of their own; this answers once its row is
        committed and announced.

        Raises:
            InvalidInputError: the event type is not a full match of its pattern.
            peewee.PeeweeException: the row could not be stored.
        """
        row = _new_row(tenant_id, event_type, payload, None, fan_out_lease_s, schema_version)
        failure = await self._from_loops.submit((row, announce))
        if failure is not None:
            raise failure
        return Event(**row)

    def ingest_batch(
        self,
        tenant_id: str,
        items: Sequence[BatchItem],
        *,
        fan_out_lease_s: float,
        announce: Announce | None = None,
        schema_versions: Sequence[int | None] | None = None,
    ) -> list[Accepted | InvalidInputError]:
        """Store a batch's events with one statement, one commit; answer each item in order.

        An item is answered its event (`Accepted`) or, when its event type is
        refused, its error; a refused item stores nothing and keeps no other
        from being stored. An idempotency key the tenant has used, or an
        earlier item of the batch used, answers the first event, not created.
        The new events are announced together once committed, before this
        returns; inside a caller's transaction, not at all (as `ingest_event`).
        `schema_versions`, when given, holds each item's `schema_version`.

        Raises:
            peewee.PeeweeException: the rows could not be stored; none was.
        """
        versions = schema_versions or [None] * len(items)
        answers, rows = _batch_rows(tenant_id, items, fan_out_lease_s, versions)
        taken = _store_batch(tenant_id, rows)
        created = [row["id"] for row in rows if row["id"] not in taken]
        if announce is not None and created and not db.in_transaction():
            _announce_quietly(announce, created)
        return [
            Accepted(taken[answer.id], False)
            if isinstance(answer, Accepted) and answer.id in taken
            else answer
            for answer in answers
        ]


def _new_row(
    tenant_id: str,
    event_type: str,
    payload: Any,
    idempotency_key: str | None,
    fan_out_lease_s: float,
    schema_version: int | None = None,
) -> dict[str, Any]:
    if not is_valid_event_type(event_type):
        raise InvalidInputError("event_type", f"must match {EVENT_TYPE_PATTERN}")
    now = utcnow()
    return {
        "id": new_id("evt"),
        "tenant_id": tenant_id,
        "event_type": event_type,
        "payload": encode_payload(payload),
        "idempotency_key": idempotency_key,
        "created_at": now,
        "fan_out_lease_until": now + dt.timedelta(seconds=fan_out_lease_s),
        "schema_version": schema_version,
    }


def _batch_rows(
    tenant_id: str,
    items: Sequence[BatchItem],
    fan_out_lease_s: float,
    versions: Sequence[int | None],
) -> tuple[list[Accepted | InvalidInputError], list[dict[str, Any]]]:
    """Each item's provisional answer, and the rows to INSERT: one per new key, or no key."""
    answers: list[Accepted | InvalidInputError] = []
    rows: list[dict[str, Any]] = []
    first_ids: dict[str, str] = {}
    for (event_type, payload, key), version in zip(items, versions, strict=True):
        if key is not None and key in first_ids:
            answers.append(Accepted(first_ids[key], False))
            continue
        try:
            row = _new_row(tenant_id, event_type, payload, key, fan_out_lease_s, version)
        except InvalidInputError as exc:
            answers.append(exc)
            continue
        rows.append(row)
        answers.append(Accepted(row["id"], True))
        if key is not None:
            first_ids[key] = row["id"]
    return answers, rows


def _store_batch(tenant_id: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    """INSERT the rows; answer, for each row a stored key kept out, that event.

    Without keys, one COPY where the database has one (`copy_rows`). With keys,
    `_store_keyed`.
    """
    if all(row["idempotency_key"] is None for row in rows):
        copy_rows(Event, rows)
        return {}
    return _store_keyed(tenant_id, rows)


def _store_keyed(tenant_id: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    """INSERT the rows whose keys are new, in one transaction; answer, for each row kept
    out, the event that holds its key.

    Each key is claimed in `event_key` first (a unique index of the partitioned
    event table could not hold it, migration 15): a request racing this one for
    the same key waits for its commit, then finds the key taken.
    """
    keys = [
        {
            "tenant_id": tenant_id,
            "idempotency_key": row["idempotency_key"],
            "event_id": row["id"],
            "created_at": row["created_at"],
        }
        for row in rows
        if row["idempotency_key"] is not None
    ]
    with db.atomic():
        insert_rows(EventKey, keys, skip_conflicts=True)
        query = EventKey.select(EventKey.idempotency_key, EventKey.event_id).where(
            (EventKey.tenant_id == tenant_id)
            & EventKey.idempotency_key.in_([key["idempotency_key"] for key in keys])
        )
        owners = dict(cast("list[tuple[str, str]]", list(query.tuples())))
        taken = {
            row["id"]: owners[row["idempotency_key"]]
            for row in rows
            if row["idempotency_key"] is not None and owners[row["idempotency_key"]] != row["id"]
        }
        insert_rows(Event, [row for row in rows if row["id"] not in taken])
    return taken


def _insert_connected(
    items: list[Submission],
) -> list[Exception | None]:
    """`_insert_together` on a thread that holds no connection between batches."""
    with db.connection_context():
        return _insert_together(items)


def _insert_together(items: list[Submission]) -> list[Exception | None]:
    """INSERT the rows of concurrent requests in one statement, committed once.

    One commit for many rows (ops/bench/NOTES.md#event-group-commit). Should the
    statement fail for a row's sake, the rows are tried one by one, so that
    only that request fails; a database that cannot be reached fails them all.
    """
    rows = [row for row, _announce in items]
    try:
        copy_rows(Event, rows)
        return [None] * len(rows)
    except (peewee.IntegrityError, peewee.DataError):
        if len(rows) == 1:
            raise
    failures: list[Exception | None] = []
    for row in rows:
        try:
            insert_rows(Event, [row])
            failures.append(None)
        except (peewee.IntegrityError, peewee.DataError) as exc:
            failures.append(exc)
    return failures


def _announce_inserted(items: list[Submission], failures: list[Exception | None]) -> None:
    """Announce the rows of one INSERT that went in, one call per `announce`.

    Runs while the next INSERT may already be under way, and before any of
    these rows' requests is answered (`GroupCommit`'s `then`).
    """
    inserted: dict[Announce, list[str]] = {}
    for (row, announce), failure in zip(items, failures, strict=True):
        if announce is not None and failure is None:
            inserted.setdefault(announce, []).append(row["id"])
    for announce, ids in inserted.items():
        _announce_quietly(announce, ids)


def _announce_quietly(announce: Announce, ids: list[str]) -> None:
    """Announce; an error is logged, never raised: the events are committed already."""
    try:
        announce(ids)
    except Exception as exc:  # noqa: BLE001 - the fan-out lease publishes them later
        log.warning("announce_failed", event_ids=ids, error=f"{type(exc).__name__}: {exc}")


def keyed_events(tenant_id: str, keys: Sequence[str]) -> dict[str, Event]:
    """The tenant's events stored under these idempotency keys, by key (absent: none)."""
    if not keys:
        return {}
    query = (
        Event.select()
        .join(EventKey, on=(EventKey.event_id == Event.id))
        .where((EventKey.tenant_id == tenant_id) & EventKey.idempotency_key.in_(list(keys)))
    )
    return {str(row.idempotency_key): row for row in query}


def get_event(tenant_id: str, event_id: str) -> Event:
    """One event of the tenant.

    Raises:
        NotFoundError: no such event for this tenant.
    """
    row = Event.get_or_none((Event.id == event_id) & (Event.tenant_id == tenant_id))
    if row is None:
        raise NotFoundError("event", event_id)
    return row


def event_deliveries(event: Event) -> list[Delivery]:
    """Every delivery of an event, oldest first."""
    return list(Delivery.select().where(Delivery.event_id == event.id).order_by(Delivery.id))


def list_events(
    tenant_id: str, *, limit: int, cursor: str | None, event_type: str | None = None
) -> Page:
    """The tenant's events, newest first, optionally of one type."""
    query = Event.select().where(Event.tenant_id == tenant_id)
    if event_type:
        query = query.where(Event.event_type == event_type)
    return paginate(query, Event.id, limit=limit, cursor=cursor)
