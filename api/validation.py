"""Request bodies and query strings, checked against the JSON Schemas in `schemas/`.

Validators are compiled once per schema; every error names the field at fault
as a dotted path (`headers.X-Foo`, `event_types.2`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable
from typing import Any

import falcon
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import schemas
from api.errors import Problem
from api.json_depth import MAX_DEPTH, deep_path, too_deep

# A \u0000 escape that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
JSON_TYPES = ("application/json",)


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = [
        (f"{name}.schema.json", Resource.from_contents(schemas.load(name), DRAFT202012))
        for name in schemas.names()
    ]
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The compiled validator of one schema file; references resolve to sibling files."""
    return compiled(schemas.load(name))


def compiled(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of a schema whose references name the schema files."""
    return jsonschema.Draft202012Validator(
        schema,
        registry=_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _field(error: jsonschema.ValidationError) -> str:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path.append(missing)
    elif error.validator == "additionalProperties":
        extra = error.message.split("'")[1] if "'" in error.message else ""
        path.append(extra)
    return ".".join(path) or "(body)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown field"
    if error.validator == "required":
        return "is required"
    if error.validator == "pattern":
        return f"does not match {error.validator_value}"
    text = error.message
    return text if len(text) <= 300 else text[:297] + "..."


@functools.cache
def _event_create_rules() -> tuple[frozenset[str], frozenset[str], re.Pattern[str], int, int]:
    """What `event_create` asks, read from the schema files so they stay the one source."""
    schema = schemas.load("event_create")
    key = schema["properties"]["idempotency_key"]
    return (
        frozenset(schema["properties"]),
        frozenset(schema["required"]),
        re.compile(schemas.load("event_type")["pattern"]),
        key["minLength"],
        key["maxLength"],
    )


def _plain_event(document: Any) -> bool:
    """True for an `event_create` body the schema surely accepts; False is no verdict.

    The full validator is costly at ingest (ops/bench/NOTES.md#event-body-quick-check).
    This accepts nothing the schema refuses (the unit tests compare the two), and hands
    every body it does not accept to the validator, which names the errors.
    """
    if type(document) is not dict:
        return False
    allowed, required, event_type, shortest, longest = _event_create_rules()
    if not required.issubset(document) or not allowed.issuperset(document):
        return False
    if "idempotency_key" in document:
        key = document["idempotency_key"]
        if type(key) is not str or not shortest <= len(key) <= longest:
            return False
    kind = document["event_type"]
    # fullmatch: stricter than the schema's search, whose `$` also matches before a final "\n".
    return (
        type(document["payload"]) is dict
        and type(kind) is str
        and event_type.fullmatch(kind) is not None
    )


# Bodies a quick check can pass without the full validator; the check is exact when it passes.
_QUICK = {"event_create": _plain_event}


def check(name: str, document: Any) -> None:
    """Validate a document against a schema.

    Raises:
        Problem: 422 naming every field at fault, the first one as `field`.
    """
    problem = _problem_of(name, document)
    if problem is not None:
        raise problem


def _problem_of(name: str, document: Any, at: str = "") -> Problem | None:
    """The 422 naming every field of `document` at fault, or None when the schema holds.

    `at` is where the document sits in its body (`events.3`): each field named
    is under it.
    """
    quick = _QUICK.get(name)
    if quick is not None and quick(document):
        return None
    return problem_from(validator(name).iter_errors(document), at)


def problem_from(errors: Iterable[jsonschema.ValidationError], at: str = "") -> Problem | None:
    """The 422 naming every field of these errors (under `at`), or None when there are none."""
    ordered = sorted(errors, key=lambda e: list(e.absolute_path))
    if not ordered:
        return None
    return _invalid(
        [{"field": _under(at, _field(e)), "message": _message(e)} for e in ordered[:20]]
    )


def _invalid(listed: list[dict[str, str]]) -> Problem:
    """The 422 for these `{field, message}` failures, the first one as `field`."""
    first = listed[0]
    return Problem(
        422,
        "validation",
        "Invalid request",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=listed,
    )


def _under(at: str, field: str) -> str:
    if not at:
        return field
    return at if field == "(body)" else f"{at}.{field}"


def read_json(
    req: falcon.Request,
    schema: str,
    max_bytes: int,
    raw: bytes | None = None,
    *,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parse and validate a JSON body of at most `max_bytes`, no field of it nesting
    deeper than `max_depth`.

    The body is `raw`, or else what was read on the event loop before a
    blocking responder ran (`req.context.body`, `api.offload.Offloaded`).

    Raises:
        Problem: 415 wrong content type, 413 too large, 400 malformed, 422 invalid
            or nested too deep.
    """
    document = parse_json(req, max_bytes, raw, max_depth=max_depth)
    try:
        text = _storable(document)
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise _malformed(exc) from None
    deep = too_deep(document, text, max_depth)
    if deep is not None:
        raise _invalid([deep])
    check(schema, document)
    return document


def parse_json(
    req: falcon.Request,
    max_bytes: int,
    raw: bytes | None = None,
    *,
    max_depth: int = MAX_DEPTH,
    field_parts: int = 1,
) -> Any:
    """Parse a JSON body of at most `max_bytes`, as `read_json` does, and judge nothing more.

    A body too deep for Python to parse is a 422 naming its field that nests past
    `max_depth`: the first `field_parts` keys of its path (`payload`; `events.3.payload`
    for a batch's item).

    Raises:
        Problem: 415 wrong content type, 413 too large, 400 malformed, 422 too deep.
    """
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as application/json.",
            field="Content-Type",
        )
    length = req.content_length
    if length is not None and length > max_bytes:
        raise Problem(
            413,
            "payload-too-large",
            "Payload too large",
            f"The body is {length} bytes; the limit is {max_bytes}.",
        )
    if raw is None:
        raw = req.context.get("body") or b""
    if len(raw) > max_bytes:
        raise Problem(
            413, "payload-too-large", "Payload too large", f"The limit is {max_bytes} bytes."
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        path = deep_path(raw, max_depth + field_parts)
        if path is None or raw.lstrip()[:1] != b"{":  # a body not an object has no field
            field = "(body)"
        else:
            field = ".".join(path[:field_parts])
        message = f"nests deeper than {max_depth} levels of objects and arrays"
        raise _invalid([{"field": field, "message": message}]) from None
    except (ValueError, UnicodeError) as exc:
        raise _malformed(exc) from None


def _malformed(exc: Exception) -> Problem:
    return Problem(
        400,
        "malformed-json",
        "Malformed JSON",
        f"The body is not valid JSON: {exc}",
        field="(body)",
    )


def item_problem(
    name: str, document: Any, at: str, *, max_depth: int = MAX_DEPTH
) -> Problem | None:
    """The 422 for one item of a body (`at`, e.g. `events.3`); None when it may be stored.

    What `read_json` refuses of a whole body, of one item: what cannot be
    stored, a field nested too deep, then what the schema `name` does not hold.
    """
    try:
        text = _storable(document)
    except (ValueError, RecursionError, UnicodeError) as exc:
        return _invalid([{"field": at, "message": str(exc)}])
    deep = too_deep(document, text, max_depth)
    if deep is not None:
        return _invalid([{"field": _under(at, deep["field"]), "message": deep["message"]}])
    return _problem_of(name, document, at)


def _storable(document: Any) -> str:
    """Refuse what parses but cannot be stored and sent back as JSON text.

    Numbers beyond a double (`1e400` reads as infinity), unpaired surrogates
    (`"\\ud800"`) and NUL characters, which PostgreSQL text cannot hold. Answers the
    document as JSON text.

    Raises:
        ValueError: naming what is wrong.
    """
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    # The substring test first: the pattern starts with a lookbehind, so it is tried at
    # every offset (ops/bench/NOTES.md#nul-escape-substring-test).
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("NUL characters (\\u0000) cannot be stored")
    return text


def read_optional_json(req: falcon.Request, schema: str, max_bytes: int) -> Any:
    """Like `read_json`, but a request without a body reads as `{}` (then validated).

    Raises:
        Problem: as `read_json`.
    """
    if req.content_length == 0 or (req.content_length is None and req.content_type is None):
        check(schema, {})
        return {}
    return read_json(req, schema, max_bytes)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def int_param(req: falcon.Request, name: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds.

    Raises:
        Problem: 400 naming the parameter.
    """
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(
            400,
            "invalid-parameter",
            "Invalid query parameter",
            f"{name} must be an integer from {low} to {high}.",
            field=name,
        )
    return value


def choice_param(req: falcon.Request, name: str, options: Iterable[str]) -> str | None:
    """An optional query parameter limited to some values.

    Raises:
        Problem: 400 naming the parameter.
    """
    raw = req.get_param(name)
    if raw is None or raw in options:
        return raw
    raise Problem(
        400,
        "invalid-parameter",
        "Invalid query parameter",
        f"{name} must be one of: {', '.join(options)}.",
        field=name,
    )


def text_param(req: falcon.Request, name: str, *, max_length: int = 200) -> str | None:
    """An optional short text query parameter.

    Raises:
        Problem: 400 naming the parameter.
    """
    raw = req.get_param(name)
    if raw is not None and not 0 < len(raw) <= max_length:
        raise Problem(
            400,
            "invalid-parameter",
            "Invalid query parameter",
            f"{name} must be 1 to {max_length} characters.",
            field=name,
        )
    return raw


def parse_time(value: str, name: str) -> dt.datetime:
    """An RFC 3339 timestamp as the naive UTC datetime the tables store.

    Raises:
        Problem: 400 naming the parameter.
    """
    try:
        parsed: dt.datetime | None = dt.datetime.fromisoformat(value)
        if parsed is not None and parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Problem(
            400,
            "invalid-parameter",
            "Invalid timestamp",
            f"{name} must be an RFC 3339 timestamp with a zone, e.g. 2026-01-31T12:00:00Z.",
            field=name,
        )
    return parsed.replace(tzinfo=None)


def time_param(req: falcon.Request, name: str) -> dt.datetime | None:
    """An optional RFC 3339 query parameter.

    Raises:
        Problem: 400 naming the parameter.
    """
    raw = req.get_param(name)
    return None if raw is None else parse_time(raw, name)
