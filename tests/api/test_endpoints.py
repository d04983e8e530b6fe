"""`/v1/endpoints`: register, list, read, change and delete where events go."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import http_writer
from multidict import CIMultiDict

from api.validation import validator
from tests.api.support import Api, assert_problem
from tests.factories import endpoint_body

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
SECRET = "/v1/endpoints/{endpoint_id}/secret"
CreateEndpoint = Callable[..., dict[str, Any]]


def test_creating_an_endpoint_answers_it_with_a_signing_secret(tenant: Api) -> None:
    body = endpoint_body(
        description="orders",
        event_types=["order.*", "invoice.paid"],
        headers={"X-Team": "billing"},
        metadata={"owner": "ops"},
        retry_schedule=[5, 60],
    )

    result = tenant.post(ENDPOINTS, body)

    assert result.status_code == 201
    created = result.json
    assert created["id"].startswith("ep_")
    assert created["secret"].startswith("whsec_")
    assert created["url"] == body["url"]
    assert created["event_types"] == ["invoice.paid", "order.*"]
    assert created["headers"] == {"X-Team": "***"}, "stored sealed, never answered"
    assert created["header_fingerprints"]["X-Team"].startswith("hmac-sha256:")
    assert created["metadata"] == {"owner": "ops"}
    assert created["retry_schedule"] == [5, 60]
    assert created["status"] == "active"


def test_a_minimal_endpoint_gets_defaults(create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint()

    assert created["event_types"] == []
    assert created["headers"] == {}
    assert created["metadata"] == {}
    assert created["retry_schedule"] is None
    assert created["description"] is None


def test_each_endpoint_gets_its_own_secret(create_endpoint: CreateEndpoint) -> None:
    assert create_endpoint()["secret"] != create_endpoint()["secret"]


def test_the_list_pages_newest_first_without_duplicates(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = [create_endpoint(description=f"n{n}")["id"] for n in range(5)]

    pages = tenant.walk(ENDPOINTS, limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [row["id"] for page in pages for row in page]
    assert listed == created[::-1]
    assert len(set(listed)) == 5


def test_a_page_that_fits_exactly_has_no_next_cursor(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    for _ in range(2):
        create_endpoint()

    result = tenant.get(ENDPOINTS, params={"limit": 2})

    assert len(result.json["data"]) == 2
    assert result.json["next_cursor"] is None


def test_the_list_holds_only_the_callers_endpoints(
    tenant: Api, stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    mine = create_endpoint()["id"]
    stranger.post(ENDPOINTS, endpoint_body())

    listed = [row["id"] for row in tenant.get(ENDPOINTS).json["data"]]

    assert listed == [mine]


def test_a_listed_or_fetched_endpoint_never_shows_its_secret(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    fetched = tenant.get(ENDPOINT, endpoint_id=created["id"])
    listed = tenant.get(ENDPOINTS)

    assert "secret" not in fetched.json
    assert created["secret"] not in fetched.text
    assert created["secret"] not in listed.text


def test_fetching_an_endpoint_answers_what_was_created(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint(metadata={"k": [1, {"deep": True}]})

    fetched = tenant.get(ENDPOINT, endpoint_id=created["id"])

    assert fetched.status_code == 200
    assert fetched.json == {k: v for k, v in created.items() if k != "secret"}


def test_the_secret_route_answers_the_signing_secret(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    result = tenant.get(SECRET, endpoint_id=created["id"])

    assert result.status_code == 200
    assert result.json == {"secret": created["secret"]}


def test_patch_changes_only_the_fields_sent(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint(description="old", metadata={"a": 1})

    result = tenant.patch(
        ENDPOINT,
        {
            "url": "https://new.example.com/in",
            "event_types": ["invoice.*"],
            "headers": {"X-A": "1"},
        },
        endpoint_id=created["id"],
    )

    assert result.status_code == 200
    changed = result.json
    assert changed["url"] == "https://new.example.com/in"
    assert changed["event_types"] == ["invoice.*"]
    assert changed["headers"] == {"X-A": "***"}
    assert changed["description"] == "old"
    assert changed["metadata"] == {"a": 1}
    assert changed["updated_at"] >= created["updated_at"]
    assert tenant.get(ENDPOINT, endpoint_id=created["id"]).json == changed


def test_patch_with_null_clears_nullable_fields(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint(description="old", retry_schedule=[1, 2])

    result = tenant.patch(
        ENDPOINT, {"description": None, "retry_schedule": None}, endpoint_id=created["id"]
    )

    assert result.json["description"] is None
    assert result.json["retry_schedule"] is None


def test_patch_does_not_change_the_secret(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    created = create_endpoint()

    tenant.patch(ENDPOINT, {"description": "x"}, endpoint_id=created["id"])

    assert tenant.get(SECRET, endpoint_id=created["id"]).json["secret"] == created["secret"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"secret": "whsec_mine"}, "secret"),
        ({"id": "ep_other"}, "id"),
        ({"status": "active"}, "status"),
        ({"url": 5}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"event_types": ["bad type!"]}, "event_types.0"),
        ({"headers": {"Host": "evil"}}, "headers.Host"),
        ({}, "(body)"),
    ],
    ids=[
        "unknown",
        "secret",
        "id",
        "status",
        "url-type",
        "url-scheme",
        "event-type",
        "reserved-header",
        "empty",
    ],
)
def test_an_invalid_patch_is_422_naming_the_field(
    tenant: Api, create_endpoint: CreateEndpoint, doc: dict[str, Any], field: str
) -> None:
    created = create_endpoint()

    result = tenant.patch(ENDPOINT, doc, endpoint_id=created["id"])

    assert_problem(result, 422, field)
    assert tenant.get(ENDPOINT, endpoint_id=created["id"]).json["url"] == created["url"]


def test_deleting_an_endpoint_is_204_and_then_it_is_gone(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint()

    deleted = tenant.delete(ENDPOINT, endpoint_id=created["id"])

    assert deleted.status_code == 204
    assert deleted.text == ""
    for method, template in (("GET", ENDPOINT), ("GET", SECRET), ("DELETE", ENDPOINT)):
        assert_problem(tenant.call(method, template, endpoint_id=created["id"]), 404)
    assert_problem(tenant.patch(ENDPOINT, {"description": "x"}, endpoint_id=created["id"]), 404)
    assert tenant.get(ENDPOINTS).json["data"] == []


@pytest.mark.parametrize(
    ("method", "template", "doc"),
    [
        ("GET", ENDPOINT, None),
        ("PATCH", ENDPOINT, {"description": "mine now"}),
        ("DELETE", ENDPOINT, None),
        ("GET", SECRET, None),
    ],
    ids=["get", "patch", "delete", "secret"],
)
def test_another_tenants_endpoint_is_404(
    tenant: Api,
    stranger: Api,
    create_endpoint: CreateEndpoint,
    method: str,
    template: str,
    doc: dict[str, Any] | None,
) -> None:
    created = create_endpoint(description="untouched")

    kwargs: dict[str, Any] = {} if doc is None else {"doc": doc}
    result = stranger.call(method, template, endpoint_id=created["id"], **kwargs)

    problem = assert_problem(result, 404)
    assert created["secret"] not in result.text
    assert problem["type"] == "urn:hookline:problem:not-found"
    assert tenant.get(ENDPOINT, endpoint_id=created["id"]).json["description"] == "untouched"


def test_an_unknown_endpoint_id_is_404(tenant: Api) -> None:
    assert_problem(tenant.get(ENDPOINT, endpoint_id="ep_01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404)


def test_a_trailing_slash_reaches_the_same_route(tenant: Api) -> None:
    result = tenant.call("GET", ENDPOINTS + "/", check=False)

    assert result.status_code == 200


def test_an_endpoint_created_with_verify_starts_unverified(tenant: Api) -> None:
    result = tenant.post(ENDPOINTS, endpoint_body(verify=True))

    assert result.status_code == 201
    assert result.json["status"] == "unverified"


@pytest.mark.parametrize(
    "value",
    ["a\x0bb", "a\x0cb", "a\x7fb", "\x01", "a\rb", "a\nb", "\x1f"],
    ids=["vt", "ff", "del", "soh", "cr", "lf", "us"],
)
def test_a_header_value_with_a_control_character_is_422_when_saved(
    tenant: Api, create_endpoint: CreateEndpoint, value: str
) -> None:
    """aiohttp refuses such a value at send time: saved, every attempt would fail."""
    created = tenant.post("/v1/endpoints", endpoint_body(headers={"X-Team": value}))
    assert_problem(created, 422, "headers.X-Team")
    endpoint = create_endpoint()
    patched = tenant.patch(ENDPOINT, {"headers": {"X-Team": value}}, endpoint_id=endpoint["id"])
    assert_problem(patched, 422, "headers.X-Team")


def test_the_header_values_saved_are_exactly_those_aiohttp_sends() -> None:
    """Every character below 0x80, and some beyond: the schema takes it iff the client can
    write it (aiohttp's own header serializer, which the worker's requests go through)."""
    schema = validator("endpoint_headers")
    for value in [f"a{chr(code)}b" for code in range(128)] + ["ünï ✓", "\u2028"]:
        try:
            http_writer._py_serialize_headers("POST / HTTP/1.1", CIMultiDict({"X-A": value}))
            sendable = True
        except ValueError:
            sendable = False
        assert schema.is_valid({"X-A": value}) == sendable, repr(value)
