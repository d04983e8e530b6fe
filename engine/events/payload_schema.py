"""Payload schemas: JSON Schema 2020-12, checked when saved, compiled once, run offline.

A schema is checked against the 2020-12 metaschema when saved, and every `$ref`
or `$dynamicRef` in it must be a local pointer (`#`, `#/$defs/…`, `#anchor`):
a remote reference is refused. The compiled validator resolves references in
a `referencing.Registry` that holds nothing and retrieves nothing, so
validating a payload never opens a connection, whatever the schema says.

`violations` lists what a payload breaks, each as a JSON pointer into the
payload and a message, at most `MAX_VIOLATIONS` of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jsonschema
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from engine.errors import InvalidInputError

__all__ = [
    "DIALECT",
    "MAX_VIOLATIONS",
    "SchemaViolationError",
    "Violation",
    "check_schema",
    "compile_schema",
    "pointer",
    "violations",
]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_VIOLATIONS = 50
_MAX_MESSAGE_CHARS = 300
_REFERENCES = ("$ref", "$dynamicRef")
# Keywords whose values are schemas by name (an object of schemas), not schemas themselves.
_NAMED = ("$defs", "definitions", "properties", "patternProperties", "dependentSchemas")
# No resources and no `retrieve`: an unknown URI is unresolvable, never fetched.
_OFFLINE = Registry()


class Violation(NamedTuple):
    """One thing a payload breaks: where (a JSON pointer into the payload), and what."""

    pointer: str
    message: str


class SchemaViolationError(InvalidInputError):
    """A payload does not hold to its event type's schema; `violations` lists each failure."""

    def __init__(self, event_type: str, version: int, found: list[Violation]) -> None:
        first = found[0] if found else Violation("", "is invalid")
        super().__init__("payload", f"{first.pointer or '(payload)'}: {first.message}")
        self.event_type = event_type
        self.version = version
        self.violations = found


def check_schema(schema: Any, field: str = "schema") -> None:
    """Refuse what is not a usable 2020-12 schema, naming the problem.

    Raises:
        InvalidInputError: not an object or boolean, another dialect, a remote
            reference, or a schema the metaschema refuses.
    """
    if not isinstance(schema, (dict, bool)):
        raise InvalidInputError(field, "must be a JSON Schema: an object or a boolean")
    if isinstance(schema, dict) and schema.get("$schema", DIALECT).rstrip("#") != DIALECT:
        raise InvalidInputError(f"{field}.$schema", f"only JSON Schema 2020-12 ({DIALECT})")
    for where, ref in _references(schema, field):
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise InvalidInputError(where, f"{ref!r}: only local references (#...) are allowed")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "".join(f".{part}" for part in exc.absolute_path)
        raise InvalidInputError(field + path, _short(exc.message)) from None
    except RecursionError:
        raise InvalidInputError(field, "is nested too deeply") from None
    _check_resolvable(schema, field)


def _check_resolvable(schema: Any, field: str) -> None:
    """Refuse a local reference to nothing, so that no payload meets one at ingest."""
    if isinstance(schema, bool) or any(where != f"{field}.$id" for where in _ids(schema, field)):
        return  # a nested `$id` moves what `#` means under it: left to `violations`
    resource = DRAFT202012.create_resource(schema)
    base = resource.id() or ""
    resolver = _OFFLINE.with_resource(base, resource).resolver(base_uri=base)
    for where, ref in _references(schema, field):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise InvalidInputError(where, f"{ref!r} points at nothing in the schema") from None


def _ids(node: Any, at: str) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            yield f"{at}.$id"
        for key, value in node.items():
            if key not in ("const", "enum", "examples", "default"):
                yield from _ids(value, f"{at}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _ids(item, f"{at}.{index}")


def compile_schema(schema: Any) -> jsonschema.Draft202012Validator:
    """A validator for a schema `check_schema` accepted; it never retrieves anything."""
    return jsonschema.Draft202012Validator(schema, registry=_OFFLINE)


def violations(
    validator: jsonschema.Draft202012Validator, payload: Any, limit: int = MAX_VIOLATIONS
) -> list[Violation]:
    """What `payload` breaks, by path, at most the first `limit` found; [] when it holds."""
    found: list[tuple[tuple[tuple[int, int, str], ...], Violation]] = []
    try:
        for error in _leaves(validator.iter_errors(payload)):
            path = error.absolute_path
            found.append((_order(path), Violation(pointer(path), _short(error.message))))
            if len(found) >= limit:
                break
    except Unresolvable as exc:
        # A reference check_schema let through that does not resolve: the payload cannot pass.
        message = _short(f"the schema's reference does not resolve: {exc}")
        found.append(((), Violation("", message)))
    return [violation for _key, violation in sorted(found, key=lambda item: item[0])]


def _order(path: Iterable[str | int]) -> tuple[tuple[int, int, str], ...]:
    """A sort key for a path: indexes as numbers (`/lines/2` before `/lines/10`)."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


def _leaves(errors: Iterable[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    """Each error, or for `anyOf`/`oneOf` failures the best match among its branches' errors."""
    for error in errors:
        if error.context:
            yield jsonschema.exceptions.best_match(error.context) or error
        else:
            yield error


def pointer(path: Iterable[str | int]) -> str:
    """An RFC 6901 JSON pointer for a path of keys and indexes (`~` and `/` escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _references(node: Any, at: str, named: bool = False) -> Iterator[tuple[str, Any]]:
    """Every reference keyword of a schema, with where it sits (`schema.properties.a.$ref`)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _references(item, f"{at}.{index}")
    elif isinstance(node, dict):
        for key, value in node.items():
            if not named and key in _REFERENCES:
                yield f"{at}.{key}", value
            elif key not in ("const", "enum", "examples", "default"):
                yield from _references(value, f"{at}.{key}", named=not named and key in _NAMED)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."
