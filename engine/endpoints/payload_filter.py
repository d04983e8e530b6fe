"""Payload filters: which events an endpoint receives, judged by their content.

A filter is a JSON object matched against the document `{"type": ..., "data": ...}`
of an event (its type and its payload). Each key is a condition on a dot path
(`"data.customer.country"`) or one of `$and`, `$or` (a list of filters) and
`$not` (a filter); a filter holds when all its keys hold, and `{}` holds always.

A path starts at `type` or `data`; each further name steps into an object, or,
written as a decimal index, into an array (`data.items.0.sku`). A condition's
value is a literal, meaning `$eq`, or an object of operators that must all hold:

- `$eq`: equal; against an array field, equal to it or to one of its elements.
  `$ne`: present and not `$eq`. `$in` / `$nin`: a list, `$eq` one of them / none.
- `$gt $gte $lt $lte`: a number against a number, a string against a string
  (by code point); anything else does not match.
- `$exists`: true, the path is present (null counts); false, it is missing.
- `$prefix $suffix`: a string field starting / ending with the operand.
  `$contains`: a string field holding the operand as a substring, or an
  array field with an element equal to it.

Equality is JSON's, without coercion: `1 == 1.0`, but `true != 1` and `"1" != 1`.
A missing path never matches, whatever the operator (`$ne` and `$nin`
included), except `{"$exists": false}`. `$not` negates a whole filter, so
`{"$not": {"data.x": 1}}` holds when `data.x` is missing.

Bounds, checked when a filter is saved (`validate`): at most 64 nodes (every
filter, condition, operator and JSON value of an operand counts one) and 8
levels (a filter inside `$and`, `$or` or `$not`, and a value inside an array
or object operand, is one level below what holds it). There is no regular
expression operator: every test runs in time linear in its operands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.endpoints.payload_operators import OPERATOR_TESTS
from engine.errors import InvalidInputError

__all__ = [
    "MAX_LEVELS",
    "MAX_NODES",
    "FilterProblem",
    "Matcher",
    "build_matcher",
    "check",
    "compile_filter",
    "document",
    "validate",
]

MAX_NODES = 64
MAX_LEVELS = 8
ROOTS = frozenset({"type", "data"})
LOGICAL = frozenset({"$and", "$or", "$not"})
_ORDERING = frozenset({"$gt", "$gte", "$lt", "$lte"})
OPERATORS = frozenset(OPERATOR_TESTS)

Matcher = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class FilterProblem:
    """What is wrong, and where inside the filter (dotted: `data.amount.$gte`, `$or.1`)."""

    path: str
    message: str


def document(event_type: str, payload: Any) -> dict[str, Any]:
    """The document a filter is matched against."""
    return {"type": event_type, "data": payload}


def validate(spec: Any) -> list[FilterProblem]:
    """Every problem of a filter, each with its path inside it; empty when it may be saved."""
    walk = _Walk()
    walk.filter(spec, "", 1)
    if walk.nodes > MAX_NODES:
        walk.problem("", f"has {walk.nodes} nodes; at most {MAX_NODES}")
    return walk.problems


def check(spec: Any, field: str = "filter") -> None:
    """Refuse a filter that `validate` finds fault with.

    Raises:
        InvalidInputError: naming the first problem's path under `field`.
    """
    problems = validate(spec)
    if problems:
        first = problems[0]
        raise InvalidInputError(_join(field, first.path) if first.path else field, first.message)


def compile_filter(spec: Mapping[str, Any]) -> Matcher:
    """A predicate over `document(...)` equivalent to the filter, built once.

    Raises:
        InvalidInputError: the filter is not valid (`check`).
    """
    check(spec)
    return build_matcher(spec)


def build_matcher(spec: Mapping[str, Any]) -> Matcher:
    """The predicate of a filter whose shape `validate` accepted, its bounds unchecked."""
    return _filter(spec)


class _Walk:
    """One pass over a filter: its problems, its nodes, the levels it reaches."""

    def __init__(self) -> None:
        self.problems: list[FilterProblem] = []
        self.nodes = 0
        self._too_deep = False

    def problem(self, at: str, message: str) -> None:
        self.problems.append(FilterProblem(at, message))

    def enter(self, at: str, level: int) -> bool:
        """Count a node; False (once reported) past the deepest level."""
        self.nodes += 1
        if level <= MAX_LEVELS:
            return True
        if not self._too_deep:
            self._too_deep = True
            self.problem(at, f"nests deeper than {MAX_LEVELS} levels")
        return False

    def filter(self, spec: Any, at: str, level: int) -> None:
        if not self.enter(at, level):
            return
        if type(spec) is not dict:
            self.problem(at, "a filter is a JSON object")
            return
        for key, value in spec.items():
            here = _join(at, key)
            if key in ("$and", "$or"):
                self.enter(here, level)
                if type(value) is not list or not value:
                    self.problem(here, f"{key} takes a non-empty list of filters")
                    continue
                for index, item in enumerate(value):
                    self.filter(item, _join(here, str(index)), level + 1)
            elif key == "$not":
                self.enter(here, level)
                self.filter(value, here, level + 1)
            elif key.startswith("$"):
                self.problem(here, f"unknown operator {key}; a filter takes $and, $or and $not")
            elif not _is_path(key):
                self.problem(here, 'a path is dot-separated names starting at "type" or "data"')
            else:
                self.condition(value, here, level)

    def condition(self, value: Any, at: str, level: int) -> None:
        self.enter(at, level)
        if type(value) is not dict:
            self.literal(value, at, level)
            return
        if not value:
            self.problem(at, "an operator object needs at least one operator")
        for name, operand in value.items():
            here = _join(at, name)
            self.enter(here, level)
            reason = _operand_problem(name, operand)
            if reason is not None:
                self.problem(here, reason)
            else:
                self.literal(operand, here, level)

    def literal(self, value: Any, at: str, level: int) -> None:
        if not self.enter(at, level):
            return
        if type(value) is list:
            for index, item in enumerate(value):
                self.literal(item, _join(at, str(index)), level + 1)
        elif type(value) is dict:
            for key, item in value.items():
                self.literal(item, _join(at, key), level + 1)


def _operand_problem(name: str, operand: Any) -> str | None:
    """Why an operator cannot take this operand; None when it can."""
    if name not in OPERATORS:
        return f"unknown operator {name}; to compare with an object, use $eq"
    if name in _ORDERING and not (_is_number(operand) or type(operand) is str):
        return f"{name} takes a number or a string"
    if name in ("$in", "$nin") and type(operand) is not list:
        return f"{name} takes a list"
    if name == "$exists" and type(operand) is not bool:
        return "$exists takes true or false"
    if name in ("$prefix", "$suffix") and type(operand) is not str:
        return f"{name} takes a string"
    return None


def _is_path(key: str) -> bool:
    names = key.split(".")
    return names[0] in ROOTS and all(names)


def _join(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


# The matcher, built from a filter `validate` accepted.

_MISSING: Any = object()


def _filter(spec: Mapping[str, Any]) -> Matcher:
    tests: list[Matcher] = []
    for key, value in spec.items():
        if key == "$and":
            tests.append(_all([_filter(item) for item in value]))
        elif key == "$or":
            tests.append(_any([_filter(item) for item in value]))
        elif key == "$not":
            tests.append(_negate(_filter(value)))
        else:
            tests.append(_condition(tuple(key.split(".")), value))
    return _all(tests)


def _all(tests: Sequence[Matcher]) -> Matcher:
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def every(doc: Mapping[str, Any]) -> bool:
        for test in frozen:
            if not test(doc):
                return False
        return True

    return every


def _any(tests: Sequence[Matcher]) -> Matcher:
    frozen = tuple(tests)

    def some(doc: Mapping[str, Any]) -> bool:
        for test in frozen:
            if test(doc):
                return True
        return False

    return some


def _negate(test: Matcher) -> Matcher:
    return lambda doc: not test(doc)


def _condition(path: tuple[str, ...], value: Any) -> Matcher:
    operators = value if type(value) is dict else {"$eq": value}
    tests = tuple(OPERATOR_TESTS[name](operand) for name, operand in operators.items())
    # The one way a missing path matches: every operator is `$exists: false`.
    on_missing = all(name == "$exists" and not operand for name, operand in operators.items())

    def condition(doc: Mapping[str, Any]) -> bool:
        found = _resolve(doc, path)
        if found is _MISSING:
            return on_missing
        for test in tests:
            if not test(found):
                return False
        return True

    return condition


def _resolve(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at a path, or `_MISSING`."""
    for name in path:
        kind = type(doc)
        if kind is dict:
            doc = doc.get(name, _MISSING)
            if doc is _MISSING:
                return _MISSING
        elif kind is list and name.isascii() and name.isdigit() and int(name) < len(doc):
            doc = doc[int(name)]
        else:
            return _MISSING
    return doc
