"""The operators of payload filters, each a test of a present value built once per operand.

What each one means is `engine.endpoints.payload_filter`'s docstring; a
missing path never reaches these tests. Equality is JSON's: a boolean is not
a number, an int equals the float of the same value, arrays and objects
compare element by element.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OPERATOR_TESTS", "json_equal"]

Test = Callable[[Any], bool]


def _kind(value: Any) -> type:
    """The JSON kind of a parsed value: int and float are one kind, bool its own."""
    kind = type(value)
    return float if kind is int else kind


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality without coercion (`true != 1`, `1 == 1.0`)."""
    kind = _kind(a)
    if kind is not _kind(b):
        return False
    if kind is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _eq(operand: Any) -> Test:
    """Equal, or (against an array) equal to one of its elements."""
    if type(operand) is str:  # the common case, without the general comparison

        def equal_string(value: Any) -> bool:
            if type(value) is str:
                return value == operand
            return type(value) is list and any(
                type(item) is str and item == operand for item in value
            )

        return equal_string

    def equal(value: Any) -> bool:
        if json_equal(value, operand):
            return True
        return type(value) is list and any(json_equal(item, operand) for item in value)

    return equal


def _ne(operand: Any) -> Test:
    equal = _eq(operand)
    return lambda value: not equal(value)


def _in(operands: list[Any]) -> Test:
    """Equal (as `$eq`) to one of the operands."""
    if all(type(item) is str for item in operands):
        strings = frozenset(operands)

        def in_strings(value: Any) -> bool:
            if type(value) is str:
                return value in strings
            return type(value) is list and any(
                type(item) is str and item in strings for item in value
            )

        return in_strings
    tests = tuple(_eq(item) for item in operands)
    return lambda value: any(test(value) for test in tests)


def _nin(operands: list[Any]) -> Test:
    inside = _in(operands)
    return lambda value: not inside(value)


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any], Test]:
    """A comparison between a number and a number, or a string and a string."""

    def build(operand: Any) -> Test:
        kind = _kind(operand)
        return lambda value: _kind(value) is kind and compare(value, operand)

    return build


def _exists(operand: bool) -> Test:
    return lambda value: operand


def _prefix(operand: str) -> Test:
    return lambda value: type(value) is str and value.startswith(operand)


def _suffix(operand: str) -> Test:
    return lambda value: type(value) is str and value.endswith(operand)


def _contains(operand: Any) -> Test:
    """A substring of a string field, or an element of an array field."""
    substring = type(operand) is str

    def contains(value: Any) -> bool:
        if type(value) is str:
            return substring and operand in value
        return type(value) is list and any(json_equal(item, operand) for item in value)

    return contains


OPERATOR_TESTS: dict[str, Callable[[Any], Test]] = {
    "$eq": _eq,
    "$ne": _ne,
    "$in": _in,
    "$nin": _nin,
    "$gt": _ordering(lambda a, b: a > b),
    "$gte": _ordering(lambda a, b: a >= b),
    "$lt": _ordering(lambda a, b: a < b),
    "$lte": _ordering(lambda a, b: a <= b),
    "$exists": _exists,
    "$prefix": _prefix,
    "$suffix": _suffix,
    "$contains": _contains,
}
