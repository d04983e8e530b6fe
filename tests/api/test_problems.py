"""Odd bodies on every route that takes one: always a 4xx problem+json, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from falcon.testing import Result

from tests.api.support import Api, assert_problem

DEEP = 10_000

# Whole bodies that are not a JSON object, or not JSON at all.
BODIES = {
    "null": b"null",
    "array": b"[]",
    "string": b'"text"',
    "number": b"42",
    "true": b"true",
    "empty": b"",
    "whitespace": b" \n\t ",
    "truncated": b'{"a": [1, 2',
    "trailing-data": b"{} []",
    "nan-literal": b"NaN",
    "invalid-utf8": b"\xff\xfe\xfd\xfc",
    "deep-array": b"[" * DEEP + b"]" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "binary": bytes(range(256)),
}

# Values placed where each route accepts free-form JSON (metadata, payload) or a string (name).
VALUES = {
    "nan": b"NaN",
    "infinity": b"Infinity",
    "minus-infinity": b"-Infinity",
    "huge-float": b"1e400",
    "huge-negative-float": b"-1e400",
    "nested-huge-float": b'{"a": [{"b": [1e999]}]}',
    "huge-int": b"1" * 5000,
    "deep-array": b"[" * DEEP + b"]" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "invalid-utf8-in-string": b'"\xff\xfe"',
    "raw-control-char": b'"a\x00b"',
    "lone-surrogate": b'"\\ud800"',
    "reversed-surrogates": b'"\\udc00\\ud800"',
    "nul-escape": b'"a\\u0000b"',
    "nul-escape-after-escaped-backslashes": b'"a\\\\\\u0000b"',
}

# Each route that takes a body: method, template, and a valid body around the odd value.
ROUTES = {
    "tenants": ("POST", "/v1/tenants", b'{"name":', b"}"),
    "endpoints": (
        "POST",
        "/v1/endpoints",
        b'{"url":"https://receiver.example.com/","metadata":{"k":',
        b"}}",
    ),
    "patch": ("PATCH", "/v1/endpoints/{endpoint_id}", b'{"metadata":{"k":', b"}}"),
    "events": ("POST", "/v1/events", b'{"event_type":"order.paid","payload":{"k":', b"}}"),
    "recover": ("POST", "/v1/endpoints/{endpoint_id}/recover", b'{"since":', b"}"),
}


def wrap(route: str, value: bytes) -> bytes:
    """A body for `route` that is valid except for `value`."""
    _, _, before, after = ROUTES[route]
    return before + value + after


def value_cases() -> list[Any]:
    cases = []
    for route in ROUTES:
        for name, value in VALUES.items():
            cases.append(pytest.param(route, wrap(route, value), id=f"{route}-{name}"))
    return cases


@pytest.fixture
def send(
    admin: Api, tenant: Api, create_endpoint: Callable[..., dict[str, Any]]
) -> Callable[[str, bytes], Result]:
    """POST (or PATCH) raw bytes as JSON to one of the routes that take a body."""

    def post(route: str, raw: bytes) -> Result:
        method, template, _, _ = ROUTES[route]
        caller = admin if route == "tenants" else tenant
        path = {"endpoint_id": create_endpoint()["id"]} if "{endpoint_id}" in template else {}
        return caller.call(method, template, raw=raw, **path)

    return post


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("raw", BODIES.values(), ids=BODIES.keys())
def test_an_odd_body_is_a_4xx_problem(
    send: Callable[[str, bytes], Result], route: str, raw: bytes
) -> None:
    result = send(route, raw)

    assert result.status_code in (400, 422), result.text[:300]
    # A body too deep to parse names the field that nests too deep, if it is an object.
    assert_problem(result, result.status_code, "a" if raw == BODIES["deep-object"] else "(body)")


@pytest.mark.parametrize(("route", "raw"), value_cases())
def test_an_odd_value_inside_a_body_is_a_4xx_problem(
    send: Callable[[str, bytes], Result], route: str, raw: bytes
) -> None:
    result = send(route, raw)

    assert result.status_code in (400, 422), result.text[:300]
    assert_problem(result, result.status_code)


def test_a_backslash_before_u0000_is_text_not_nul(tenant: Api) -> None:
    raw = b'{"event_type":"order.paid","payload":{"path":"C:\\\\u0000\\\\x"}}'

    result = tenant.call("POST", "/v1/events", raw=raw)

    assert result.status_code == 202, result.text
    assert result.json["payload"] == {"path": "C:\\u0000\\x"}


def test_a_refused_body_stores_nothing(tenant: Api) -> None:
    for value in (b"NaN", b'"a\x00b"', b"[" * DEEP + b"]" * DEEP):
        tenant.call("POST", "/v1/endpoints", raw=wrap("endpoints", value))
        tenant.call("POST", "/v1/events", raw=wrap("events", value))

    assert tenant.get("/v1/endpoints").json["data"] == []
    assert tenant.get("/v1/events").json["data"] == []


def test_a_problem_never_leaks_internals(tenant: Api) -> None:
    result = tenant.call("POST", "/v1/events", raw=wrap("events", b"[" * DEEP + b"]" * DEEP))

    problem = assert_problem(result, 422, "payload")
    assert "Traceback" not in result.text
    assert "/work/" not in problem["detail"]
