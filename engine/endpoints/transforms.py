"""Transformations: an endpoint's JMESPath expression shapes the body it receives.

The expression is evaluated against the document `{"type", "timestamp",
"event_id", "data", "endpoint": {"id", "metadata"}}`; its result, a JSON
object or array, is the whole request body. `check` is the save-time test
(it compiles, at most `MAX_EXPRESSION_BYTES`, only known functions);
`render` is the one evaluation, shared by delivery and preview, and raises
`TransformError` with the reason for what a receiver must not get: null, a
scalar, a body over the size limit.

Every evaluation is bounded, whatever the expression: at most `MAX_STEPS`
visits of the expression's nodes, and no intermediate array or string
longer than the body limit (a 4 KiB expression can otherwise double a
value hundreds of times over). Compiled expressions are cached per process,
keyed by their text.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions as jmespath_functions
from jmespath.parser import ParsedResult
from jmespath.visitor import Options, TreeInterpreter

from engine.db.models import Endpoint, Event
from engine.errors import EngineError, InvalidInputError

__all__ = [
    "ERROR_CLASS",
    "MAX_EXPRESSION_BYTES",
    "MAX_STEPS",
    "TransformError",
    "check",
    "document",
    "render",
]

ERROR_CLASS = "transform_error"  # the attempt's error_class, and the quarantine reason
MAX_EXPRESSION_BYTES = 4096
MAX_STEPS = 200_000  # node visits per evaluation: a projection over 10,000 items takes ~110,000
COMPILED_CACHE = 1024  # expressions kept compiled per process


class TransformError(EngineError):
    """An expression's result cannot be a request body, or its evaluation failed."""


def check(transform: Mapping[str, Any] | None) -> None:
    """The save-time checks of an endpoint's `transform`.

    Raises:
        InvalidInputError: names `transform` (or `transform.jmespath`) and why.
    """
    if transform is None:
        return
    expression = transform.get("jmespath")
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInputError("transform.jmespath", "an expression is required")
    if len(expression.encode()) > MAX_EXPRESSION_BYTES:
        raise InvalidInputError(
            "transform", f"the expression is longer than {MAX_EXPRESSION_BYTES} bytes"
        )
    try:
        parsed = _compiled(expression)
    except jmespath_errors.JMESPathError as exc:
        raise InvalidInputError("transform", f"does not compile: {_one_line(exc)}") from None
    except RecursionError:
        raise InvalidInputError("transform", "the expression nests too deeply") from None
    for name in _function_names(parsed.parsed):
        if name not in _KNOWN_FUNCTIONS:
            raise InvalidInputError("transform", f"unknown function {name}()")


def document(event: Event, endpoint: Endpoint, data: Any = None) -> dict[str, Any]:
    """The input an expression sees for one event and endpoint.

    `data` is the event's payload already parsed, when the caller has it (a
    fan-out shares one among its deliveries); it is only read, never changed.
    """
    return {
        "type": event.event_type,
        "timestamp": sent_at(event.created_at),
        "event_id": event.id,
        "data": json.loads(event.payload) if data is None else data,
        "endpoint": {"id": endpoint.id, "metadata": dict(endpoint.metadata or {})},
    }


def sent_at(created_at: dt.datetime) -> str:
    """An event's `timestamp`, as the standard envelope writes it."""
    return created_at.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def render(transform: Mapping[str, Any], doc: Mapping[str, Any], *, max_bytes: int) -> bytes:
    """The request body: the expression's result as compact JSON (UTF-8).

    Raises:
        TransformError: the expression does not compile or fails, or its result
            is null, a scalar, not JSON, or larger than `max_bytes`.
    """
    expression = transform.get("jmespath")
    if not isinstance(expression, str):
        raise TransformError("the transform has no jmespath expression")
    try:
        parsed = _compiled(expression)
        interpreter = _Bounded(max_items=max_bytes)
        result = interpreter.visit(parsed.parsed, doc)
    except jmespath_errors.JMESPathError as exc:
        raise TransformError(f"the expression failed: {_one_line(exc)}") from None
    except RecursionError:
        raise TransformError("the expression nests too deeply") from None
    if result is None:
        raise TransformError("the expression's result is null; a body must be an object or array")
    if not isinstance(result, dict | list):
        kind = _JSON_KINDS.get(type(result), type(result).__name__)
        raise TransformError(
            f"the expression's result is a {kind}; a body must be an object or array"
        )
    if _larger_than(result, max_bytes):
        raise TransformError(f"the result is larger than {max_bytes} bytes")
    try:
        body = json.dumps(result, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # inf or NaN, from to_number
        raise TransformError(f"the result is not JSON: {exc}") from None
    encoded = body.encode()
    if len(encoded) > max_bytes:
        raise TransformError(f"the result is larger than {max_bytes} bytes")
    return encoded


_JSON_KINDS = {str: "string", int: "number", float: "number", bool: "boolean"}


@functools.lru_cache(maxsize=COMPILED_CACHE)
def _compiled(expression: str) -> ParsedResult:
    return jmespath.compile(expression)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _function_names(node: Any) -> Iterator[str]:
    """The names of the functions an expression calls, from its syntax tree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_expression":
            yield str(item.get("value"))
        stack.extend(item.get("children") or ())


def _larger_than(value: Any, limit: int) -> bool:
    """True if `value`'s JSON is surely over `limit` bytes (a lower bound, counted lazily).

    Each value visited adds at least one byte, so this stops after `limit`
    visits however often the result holds the same value (`[@, @] | [@, @] …`).
    """
    size, stack = 0, [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            size += 2 + sum(len(key) + 3 for key in item)
            stack.extend(item.values())
        elif type(item) is list:
            size += 1 + max(len(item), 1)
            stack.extend(item)
        elif type(item) is str:
            size += len(item) + 2
        else:
            size += 1
        if size > limit:
            return True
    return False


class _BoundedFunctions(jmespath_functions.Functions):
    """The standard functions, with `to_string` bounded as the body is."""

    max_chars = 0

    @jmespath_functions.signature({"types": []})
    def _func_to_string(self, arg: Any) -> str:
        if isinstance(arg, str):
            return arg
        if _larger_than(arg, self.max_chars):
            raise TransformError(f"to_string() of a value larger than {self.max_chars} bytes")
        return json.dumps(arg, separators=(",", ":"), default=str)


_KNOWN_FUNCTIONS = frozenset(_BoundedFunctions.FUNCTION_TABLE)


class _Bounded(TreeInterpreter):
    """JMESPath's interpreter, counting its steps and the length of what it builds."""

    def __init__(self, *, max_items: int, max_steps: int = MAX_STEPS) -> None:
        functions = _BoundedFunctions()
        functions.max_chars = max_items
        super().__init__(Options(custom_functions=functions))
        self.max_items = max_items
        self.steps_left = max_steps

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        # Every node passes here: the dispatch is done in place, the visitors looked up once
        # per process, so the bounds cost no second call (ops/bench/NOTES.md#transform-evaluation).
        self.steps_left -= 1
        if self.steps_left < 0:
            raise TransformError(f"the expression takes more than {MAX_STEPS} steps")
        kind = node["type"]
        method = _VISITORS.get(kind)
        if method is None:
            method = _VISITORS[kind] = getattr(TreeInterpreter, f"visit_{kind}")
        result = method(self, node, *args, **kwargs)
        shape = type(result)
        if (shape is list or shape is str) and len(result) > self.max_items:
            raise TransformError(f"an intermediate value is larger than {self.max_items} bytes")
        return result


_VISITORS: dict[str, Any] = {}  # TreeInterpreter's visit_* functions, by node type
