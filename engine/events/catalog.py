"""The event-type catalog: the types a tenant declares, their schemas and examples.

Every change of a tenant's catalog raises `tenant.event_types_generation` in
the same transaction, which is how the API's processes learn of it
(`engine.events.catalog_cache`). A change of `schema` raises the type's
`version`; deleting a type archives it, and its row stays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import peewee

from engine.db.models import EventType, Tenant, db, utcnow
from engine.db.pages import Page, paginate
from engine.errors import ConflictError, InvalidInputError, NotFoundError
from engine.events.payload_schema import check_schema, compile_schema, violations
from engine.events.types import EVENT_TYPE_PATTERN, is_valid_event_type
from engine.ids import new_id

__all__ = [
    "archive_event_type",
    "create_event_type",
    "get_event_type",
    "list_event_types",
    "schema_of",
    "strict_mode",
    "update_event_type",
]

_SCHEMA_TEXT = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}


def schema_of(row: EventType) -> Any:
    """The type's schema as a JSON value, or None."""
    return None if row.schema is None else json.loads(row.schema)


def create_event_type(tenant_id: str, fields: Mapping[str, Any]) -> EventType:
    """Declare an event type.

    Raises:
        InvalidInputError: the name, the schema, or an example the schema refuses.
        ConflictError: the tenant has a type of that name already (archived ones too).
    """
    name = fields["name"]
    if not is_valid_event_type(name):
        raise InvalidInputError("name", f"must match {EVENT_TYPE_PATTERN}")
    schema = fields.get("schema")
    examples = list(fields.get("examples") or [])
    _check(schema, examples)
    now = utcnow()
    try:
        with db.atomic():
            row = EventType.create(
                id=new_id("etype"),
                tenant_id=tenant_id,
                name=name,
                description=fields.get("description"),
                schema=_text(schema),
                examples=examples,
                version=1,
                archived=False,
                created_at=now,
                updated_at=now,
            )
            _changed(tenant_id)
    except peewee.IntegrityError:
        raise ConflictError(f"event type {name!r} exists already") from None
    return row


def get_event_type(tenant_id: str, name: str) -> EventType:
    """One event type of the tenant, archived or not.

    Raises:
        NotFoundError: the tenant has no type of that name.
    """
    row = EventType.get_or_none((EventType.tenant_id == tenant_id) & (EventType.name == name))
    if row is None:
        raise NotFoundError("event type", name)
    return row


def first_example(tenant_id: str, name: str) -> Any | None:
    """The first example of the tenant's live type `name`; None without one."""
    examples = (
        EventType.select(EventType.examples)
        .where(
            (EventType.tenant_id == tenant_id)
            & (EventType.name == name)
            & (EventType.archived == False)  # noqa: E712 - peewee builds SQL from ==
        )
        .scalar()
    )
    return examples[0] if examples else None


def list_event_types(
    tenant_id: str, *, limit: int, cursor: str | None, archived: bool | None = None
) -> Page:
    """The tenant's event types, newest first; only archived or unarchived ones if asked."""
    query = EventType.select().where(EventType.tenant_id == tenant_id)
    if archived is not None:
        query = query.where(EventType.archived == archived)
    return paginate(query, EventType.id, limit=limit, cursor=cursor)


def strict_mode(tenant_id: str) -> bool:
    """Whether the tenant accepts only events of registered, unarchived types."""
    value = Tenant.select(Tenant.strict_event_types).where(Tenant.id == tenant_id).scalar()
    return bool(value)


def update_event_type(tenant_id: str, name: str, fields: Mapping[str, Any]) -> EventType:
    """Change a type's description, schema, examples, or archive or restore it.

    A schema that differs from the stored one raises `version` by one.

    Raises:
        NotFoundError: the tenant has no type of that name.
        InvalidInputError: the schema, or an example the (new) schema refuses.
    """
    with db.atomic():
        row = get_event_type(tenant_id, name)
        schema = fields["schema"] if "schema" in fields else schema_of(row)
        examples = list(fields["examples"] or []) if "examples" in fields else row.examples
        _check(schema, examples)
        if "schema" in fields and _canonical(schema) != _canonical(schema_of(row)):
            row.schema = _text(schema)
            row.version += 1
        row.examples = examples
        for name_ in ("description", "archived"):
            if name_ in fields:
                setattr(row, name_, fields[name_])
        row.updated_at = utcnow()
        row.save()
        _changed(tenant_id)
    return row


def archive_event_type(tenant_id: str, name: str) -> EventType:
    """Archive a type: its schema no longer applies, and a strict tenant refuses its events.

    Raises:
        NotFoundError: the tenant has no type of that name.
    """
    return update_event_type(tenant_id, name, {"archived": True})


def _check(schema: Any, examples: list[Any]) -> None:
    """The schema must be usable, and every example must hold to it."""
    if schema is None:
        return
    check_schema(schema)
    validator = compile_schema(schema)
    for index, example in enumerate(examples):
        found = violations(validator, example, limit=1)
        if found:
            where = f"examples.{index}"
            raise InvalidInputError(where, f"{found[0].pointer or '(example)'}: {found[0].message}")


def _text(schema: Any) -> str | None:
    return None if schema is None else json.dumps(schema, **_SCHEMA_TEXT)  # type: ignore[arg-type]


def _canonical(schema: Any) -> str:
    """The schema as text that ignores key order: reordering keys is no change."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _changed(tenant_id: str) -> None:
    """Raise the tenant's catalog generation, in the caller's transaction."""
    Tenant.update(event_types_generation=Tenant.event_types_generation + 1).where(
        Tenant.id == tenant_id
    ).execute()
