"""Keyset pagination over time-sorted ids: newest first, opaque cursors."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInputError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Page:
    """One page of rows and the cursor of the next, if any."""

    items: list[Any]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    """An opaque cursor that resumes after `last_id`."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor resumes after.

    Raises:
        InvalidInputError: the cursor was not made by `encode_cursor`.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidInputError("cursor", "is not a cursor this API returned") from None
    if not value or "_" not in value or len(value) > 64:
        raise InvalidInputError("cursor", "is not a cursor this API returned")
    return value


def paginate(query: Any, id_field: Any, *, limit: int, cursor: str | None) -> Page:
    """Run a peewee query newest first, `limit` rows after `cursor`."""
    if cursor:
        query = query.where(id_field < decode_cursor(cursor))
    rows = list(query.order_by(id_field.desc()).limit(limit + 1))
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, encode_cursor(getattr(rows[-1], id_field.name)))
    return Page(rows, None)
