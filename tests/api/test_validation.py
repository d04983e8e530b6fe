"""Request bodies and query strings: every refusal is problem+json naming the field, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from falcon.testing import Result

from tests.api.conftest import MakeApi
from tests.api.support import Api, assert_problem
from tests.factories import endpoint_body, event_body, make_settings

ENDPOINTS = "/v1/endpoints"
EVENTS = "/v1/events"
Send = Callable[..., Result]


@pytest.fixture
def send(
    admin: Api, tenant: Api, create_endpoint: Callable[..., dict[str, Any]]
) -> Callable[[str], Send]:
    """`send(route)(raw, **kwargs)` posts raw bytes to one of the routes that take a body."""

    def for_route(route: str) -> Send:
        if route == "tenants":
            return lambda raw, **kw: admin.call("POST", "/v1/tenants", raw=raw, **kw)
        if route == "endpoints":
            return lambda raw, **kw: tenant.call("POST", ENDPOINTS, raw=raw, **kw)
        if route == "events":
            return lambda raw, **kw: tenant.call("POST", EVENTS, raw=raw, **kw)
        endpoint_id = create_endpoint()["id"]
        return lambda raw, **kw: tenant.call(
            "PATCH", ENDPOINTS + "/{endpoint_id}", raw=raw, endpoint_id=endpoint_id, **kw
        )

    return for_route


BODY_ROUTES = ["tenants", "endpoints", "patch", "events"]


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("raw", [b"{", b'{"url": }', b"", b"{}{}", b"{'a': 1}"])
def test_malformed_json_is_400_naming_the_body(
    send: Callable[[str], Send], route: str, raw: bytes
) -> None:
    problem = assert_problem(send(route)(raw), 400, "(body)")
    assert problem["type"] == "urn:hookline:problem:malformed-json"


@pytest.mark.parametrize(
    ("route", "doc", "field"),
    [
        ("endpoints", {"url": 5}, "url"),
        ("endpoints", endpoint_body(event_types="order.*"), "event_types"),
        ("endpoints", endpoint_body(headers=["X-A"]), "headers"),
        ("endpoints", endpoint_body(retry_schedule=[0]), "retry_schedule.0"),
        ("endpoints", endpoint_body(description=None), "description"),
        ("events", event_body(payload="text"), "payload"),
        ("events", event_body(payload=[1]), "payload"),
        ("events", event_body(event_type=7), "event_type"),
        ("events", event_body(idempotency_key=""), "idempotency_key"),
        ("endpoints", {}, "url"),
        ("events", {"payload": {}}, "event_type"),
        ("events", {"event_type": "order.paid"}, "payload"),
        ("endpoints", endpoint_body(colour="red"), "colour"),
        ("events", event_body(extra=1), "extra"),
        ("events", event_body(event_type="bad type!"), "event_type"),
        ("events", event_body(event_type="x" * 129), "event_type"),
        ("events", event_body(event_type=""), "event_type"),
        pytest.param(
            "events",
            event_body(event_type="order.paid\n"),
            "event_type",
            id="newline-type",
        ),
        ("endpoints", {"url": "ftp://x"}, "url"),
        ("endpoints", {"url": "javascript:alert(1)"}, "url"),
        ("endpoints", {"url": "https://user:pw@example.com/"}, "url"),
        ("endpoints", {"url": "https://exa mple.com/"}, "url"),
        ("endpoints", {"url": "http://"}, "url"),
        ("endpoints", {"url": "https://" + "a" * 2048 + ".com/"}, "url"),
    ],
)
def test_an_invalid_body_is_422_naming_the_field(
    send: Callable[[str], Send], route: str, doc: dict[str, Any], field: str
) -> None:
    problem = assert_problem(send(route)(json.dumps(doc).encode()), 422, field)
    assert problem["type"] == "urn:hookline:problem:validation"
    assert problem["errors"][0]["field"] == field


def test_every_schema_error_is_listed(tenant: Api) -> None:
    result = tenant.post(ENDPOINTS, {"url": 5, "colour": "red", "event_types": "x"})

    fields = {error["field"] for error in assert_problem(result, 422)["errors"]}
    assert {"url", "colour", "event_types"} <= fields


def test_a_private_address_is_refused_unless_allowed(make_api: MakeApi, tenant: Api) -> None:
    strict = make_api(make_settings(HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS="false"))
    api = strict.as_key(tenant.key)

    for url in ("http://127.0.0.1/", "http://169.254.169.254/latest", "http://[::1]:8080/"):
        assert_problem(api.post(ENDPOINTS, {"url": url}), 422, "url")
    assert tenant.post(ENDPOINTS, {"url": "http://127.0.0.1:9/"}).status_code == 201


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "content-length",
        "Host",
        "webhook-signature",
        "Webhook-Id",
        "Proxy-Authorization",
        "Transfer-Encoding",
        "User-Agent",
    ],
)
def test_a_reserved_custom_header_is_422_naming_it(tenant: Api, name: str) -> None:
    result = tenant.post(ENDPOINTS, endpoint_body(headers={name: "x"}))

    assert_problem(result, 422, f"headers.{name}")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "a\r\nX-Injected: 1"},
        {"Bad Name": "x"},
        {"X-A": "x" * 4097},
        pytest.param(
            {"X-A": "v\n"},
            id="value-trailing-newline",
        ),
        pytest.param(
            {"X-A\n": "v"},
            id="name-trailing-newline",
        ),
    ],
)
def test_a_header_that_cannot_be_sent_is_422(tenant: Api, headers: dict[str, str]) -> None:
    result = tenant.post(ENDPOINTS, endpoint_body(headers=headers))

    assert_problem(result, 422)
    assert assert_problem(result, 422)["field"].startswith("headers")


def sized(limit: int, extra: int = 0) -> bytes:
    """An event body of exactly `limit + extra` bytes."""
    base = json.dumps(event_body(payload={"p": ""}), separators=(",", ":")).encode()
    pad = limit + extra - len(base)
    return json.dumps(event_body(payload={"p": "x" * pad}), separators=(",", ":")).encode()


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(tenant: Api) -> None:
    limit = 256 * 1024

    assert len(sized(limit)) == limit
    assert tenant.call("POST", EVENTS, raw=sized(limit)).status_code == 202
    problem = assert_problem(tenant.call("POST", EVENTS, raw=sized(limit, 1)), 413)
    assert problem["type"] == "urn:hookline:problem:payload-too-large"


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_a_body_over_256_kib_is_413_on_every_route(send: Callable[[str], Send], route: str) -> None:
    assert_problem(send(route)(b" " * (256 * 1024 + 1)), 413)


def test_hookline_max_body_bytes_sets_a_smaller_limit(make_api: MakeApi, tenant: Api) -> None:
    small = make_api(make_settings(HOOKLINE_MAX_BODY_BYTES="2048")).as_key(tenant.key)

    assert small.call("POST", EVENTS, raw=sized(2048)).status_code == 202
    assert_problem(small.call("POST", EVENTS, raw=sized(2048, 1)), 413)
    assert tenant.call("POST", EVENTS, raw=sized(4096)).status_code == 202


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_json_is_415(
    send: Callable[[str], Send], route: str, content_type: str | None
) -> None:
    problem = assert_problem(send(route)(b"{}", content_type=content_type), 415, "Content-Type")
    assert problem["type"] == "urn:hookline:problem:unsupported-media-type"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_parameters_and_case_are_accepted(tenant: Api, content_type: str) -> None:
    raw = json.dumps(event_body()).encode()
    assert tenant.call("POST", EVENTS, raw=raw, content_type=content_type).status_code == 202


LIST_ROUTES = [ENDPOINTS, EVENTS, "/v1/deliveries", "/v1/deliveries/dlv_x/attempts"]


@pytest.mark.parametrize("template", LIST_ROUTES)
@pytest.mark.parametrize("limit", ["0", "201", "x", "-1", "1.5", "", "9" * 5000])
def test_a_bad_limit_is_400_naming_limit(tenant: Api, template: str, limit: str) -> None:
    result = tenant.call("GET", template, params={"limit": limit}, check=template != LIST_ROUTES[3])

    problem = assert_problem(result, 400, "limit")
    assert problem["type"] == "urn:hookline:problem:invalid-parameter"


@pytest.mark.parametrize("limit", ["1", "200"])
def test_the_limit_bounds_are_accepted(tenant: Api, limit: str) -> None:
    assert tenant.get(ENDPOINTS, params={"limit": limit}).status_code == 200


@pytest.mark.parametrize("template", [*LIST_ROUTES[:3], "/v1/quarantine"])
@pytest.mark.parametrize("cursor", ["!!!", "abc", "%%%", "é", "x" * 201])
def test_a_bad_cursor_is_400_naming_cursor(tenant: Api, template: str, cursor: str) -> None:
    problem = assert_problem(tenant.get(template, params={"cursor": cursor}), 400, "cursor")

    assert problem["type"] == "urn:hookline:problem:invalid-parameter"


def test_a_cursor_from_one_list_is_harmless_in_another(
    tenant: Api, create_endpoint: Callable[..., dict[str, Any]]
) -> None:
    for _ in range(2):
        create_endpoint()
    cursor = tenant.get(ENDPOINTS, params={"limit": 1}).json["next_cursor"]

    assert tenant.get(EVENTS, params={"cursor": cursor}).status_code == 200


@pytest.mark.parametrize("status", ["done", "PENDING", "", "pending,queued"])
def test_a_bad_delivery_status_filter_is_400(tenant: Api, status: str) -> None:
    assert_problem(tenant.get("/v1/deliveries", params={"status": status}), 400, "status")


@pytest.mark.parametrize(
    ("template", "param", "value"),
    [
        (EVENTS, "event_type", "x" * 129),
        ("/v1/deliveries", "event_id", "e" * 65),
        ("/v1/deliveries", "endpoint_id", "e" * 65),
    ],
)
def test_an_oversized_filter_is_400_naming_it(
    tenant: Api, template: str, param: str, value: str
) -> None:
    assert_problem(tenant.get(template, params={param: value}), 400, param)
