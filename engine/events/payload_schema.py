"""Payload schemas: JSON Schema 2020-12, checked when saved, compiled once, run offline.

A schema is checked when saved: against the 2020-12 metaschema (`jsonschema`),
every `$ref` or `$dynamicRef` in it must be a local pointer (`#`, `#/$defs/…`,
`#anchor`) that resolves in a `referencing.Registry` holding nothing and
retrieving nothing (a remote reference is refused), and it must compile.

Payloads are validated by `jsonschema_rs`, compiled once per schema version:
`jsonschema`'s validator cost 450 µs for a 20-property payload, about what the
rest of an ingest costs, where `jsonschema_rs` takes 3 µs
(ops/bench/NOTES.md#payload-schemas). It is built `offline` (it retrieves
nothing, whatever the schema says), and with the linear-time regex engine, so
no `pattern` can backtrack for long: a pattern that needs backtracking
(lookaround, backreferences) is refused when the schema is saved. Payloads
reach it at most as deep as `json.loads` parses (Python's recursion limit),
which it handles.

`violations` lists what a payload breaks, each as a JSON pointer into the
payload and a message, at most `MAX_VIOLATIONS` of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jsonschema
import jsonschema_rs
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from engine.errors import InvalidInputError

__all__ = [
    "DIALECT",
    "MAX_VIOLATIONS",
    "TOO_DEEP",
    "SchemaViolationError",
    "Violation",
    "check_schema",
    "compile_schema",
    "failed",
    "pointer",
    "violations",
]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_VIOLATIONS = 50
_MAX_MESSAGE_CHARS = 300
TOO_DEEP = "could not be checked against its schema (nested too deeply?)"


def failed(exc: BaseException) -> bool:
    """Whether `jsonschema_rs` failed (rather than the process being stopped).

    A Rust panic surfaces as pyo3's `PanicException`, a BaseException that cannot be
    imported; it must answer a 422, not take the request or the process down.
    """
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


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
    try:
        compile_schema(schema)
    except BaseException as exc:
        if not failed(exc):
            raise
        raise InvalidInputError(field, _short(str(exc).split("\n\n")[0])) from None


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


def compile_schema(schema: Any) -> jsonschema_rs.Draft202012Validator:
    """A validator for a schema; it never retrieves anything, and its regexes never backtrack.

    Raises:
        ValueError: the schema does not compile (a remote reference among them).
    """
    return jsonschema_rs.Draft202012Validator(
        schema, offline=True, pattern_options=jsonschema_rs.RegexOptions()
    )


def violations(
    validator: jsonschema_rs.Draft202012Validator, payload: Any, limit: int = MAX_VIOLATIONS
) -> list[Violation]:
    """What `payload` breaks, by path, at most the first `limit` found; [] when it holds."""
    found: list[tuple[tuple[tuple[int, int, str], ...], Violation]] = []
    try:
        for error in validator.iter_errors(payload):
            path = error.instance_path
            found.append((_order(path), Violation(pointer(path), _short(error.message))))
            if len(found) >= limit:
                break
    except BaseException as exc:
        if not failed(exc):
            raise
        found.append(((), Violation("", TOO_DEEP)))
    return [violation for _key, violation in sorted(found, key=lambda item: item[0])]


def _order(path: Iterable[str | int]) -> tuple[tuple[int, int, str], ...]:
    """A sort key for a path: indexes as numbers (`/lines/2` before `/lines/10`)."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


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
