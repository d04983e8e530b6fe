"""COPY for the hot inserts: each row one line of COPY's text format, one statement in all.

What a multi-row INSERT stores, at well under half its CPU on both sides
(ops/bench/NOTES.md#copy): psycopg2 adapts each value of an INSERT separately
and PostgreSQL parses every literal. It rests on psycopg2's `cursor.copy_expert`
and on COPY's text format spelling each value below as PostgreSQL reads it
back; anything this cannot write exactly as the INSERT would (a column type not
below, an aware datetime, a NUL) answers None and is INSERTed instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import peewee


def copy_rows(
    database: Any, model: type[peewee.Model], rows: Sequence[Mapping[str, Any]]
) -> int | None:
    """Store rows (dicts with the same keys) on `database` with one COPY; answer how many.

    None, with nothing sent, when COPY would not store them exactly as an
    INSERT does: the caller INSERTs them. A conflict fails the whole COPY, as
    it fails the INSERT.
    """
    plan = copy_plan(model, tuple(rows[0]))
    if plan is None:
        return None
    statement, encoders = plan
    try:
        lines = ["\t".join([encode(row[name]) for name, encode in encoders]) for row in rows]
    except _NotCopyable:
        return None
    with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
        cursor = database.cursor()
        cursor.copy_expert(statement, io.StringIO("\n".join(lines) + "\n"))
    return int(cursor.rowcount)


class _NotCopyable(Exception):
    """A value COPY's text format would not store exactly as an INSERT does."""


_NULL = "\\N"
# COPY's text format gives these a meaning; NUL cannot be stored in text at all.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not str or "\x00" in value:
        raise _NotCopyable(type(value).__name__)
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_int(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not int:
        raise _NotCopyable(type(value).__name__)
    return str(value)


def _copy_float(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) not in (float, int):
        raise _NotCopyable(type(value).__name__)
    return repr(float(value))


def _copy_bool(value: Any) -> str:
    if value is None:
        return _NULL
    if type(value) is not bool:
        raise _NotCopyable(type(value).__name__)
    return "t" if value else "f"


def _copy_timestamp(value: Any) -> str:
    if value is None:
        return _NULL
    # An aware datetime would be converted by the session's time zone; naive UTC is stored.
    if type(value) is not dt.datetime or value.tzinfo is not None:
        raise _NotCopyable(type(value).__name__)
    return str(value)


# Field class -> how COPY's text format spells its values. Only these exact classes: a
# subclass (JSONField is a TextField) may convert values its own way, so it goes by INSERT.
_COPY_ENCODERS: dict[type[peewee.Field], Callable[[Any], str]] = {
    peewee.BooleanField: _copy_bool,
    peewee.IntegerField: _copy_int,
    peewee.BigIntegerField: _copy_int,
    peewee.SmallIntegerField: _copy_int,
    peewee.FloatField: _copy_float,
    peewee.DoubleField: _copy_float,
    peewee.DateTimeField: _copy_timestamp,
    peewee.CharField: _copy_text,
    peewee.TextField: _copy_text,
}


@functools.cache
def copy_plan(
    model: type[peewee.Model], names: tuple[str, ...]
) -> tuple[str, list[tuple[str, Callable[[Any], str]]]] | None:
    """The COPY statement and each column's encoder, or None if a column has none."""
    meta: Any = model._meta
    encoders = []
    for name in names:
        field = meta.fields[name]
        encode = _COPY_ENCODERS.get(type(field))
        if encode is None:
            return None
        encoders.append((name, encode))
    columns = ", ".join(f'"{meta.fields[name].column_name}"' for name in names)
    return f'COPY "{meta.table_name}" ({columns}) FROM STDIN', encoders
