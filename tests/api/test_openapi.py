"""The OpenAPI document describes exactly the routes the app serves, and resolves."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import schemas
from api.app import create_app
from tests.api.support import OPENAPI_URI
from tests.factories import make_settings

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"}


def served_operations() -> set[tuple[str, str]]:
    """(method, template) for every responder a resource really implements."""
    app = create_app(make_settings(), database=None, enqueue=lambda kind, ident: True)
    found: set[tuple[str, str]] = set()

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None:
                served = node.resource.resource  # behind its api.offload.Offloaded face
                for method, responder in node.method_map.items():
                    if getattr(inspect.unwrap(responder), "__self__", None) is served:
                        found.add((method, node.uri_template))
            walk(node.children)

    walk(app._router._roots)
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in schemas.openapi()["paths"].items()
        for method in item
        if method.upper() in HTTP_METHODS
    }


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schemas.openapi()["paths"].items():
        for method, operation in item.items():
            if method.upper() in HTTP_METHODS:
                yield method.upper(), path, operation


def test_the_router_walk_finds_the_routes() -> None:
    assert ("GET", "/healthz") in served_operations()
    assert ("DELETE", "/v1/endpoints/{endpoint_id}") in served_operations()
    assert ("GET", "/v1/endpoints/{endpoint_id}/secret") in served_operations()


def test_every_served_route_is_documented() -> None:
    assert served_operations() - documented_operations() == set()


def test_the_metrics_route_is_documented() -> None:
    assert ("GET", "/metrics") in documented_operations()


def test_every_documented_route_is_served() -> None:
    assert documented_operations() - served_operations() == set()


def test_the_document_is_openapi_3_1_with_unique_operation_ids() -> None:
    document = schemas.openapi()
    ids = [operation["operationId"] for _, _, operation in operations()]

    assert document["openapi"] == "3.1.0"
    assert len(ids) == len(set(ids))


def test_every_ref_in_the_document_resolves() -> None:
    document = schemas.openapi()
    resolver = (
        Registry()
        .with_resource(OPENAPI_URI, Resource.from_contents(document, DRAFT202012))
        .resolver(OPENAPI_URI)
    )

    unresolved = []
    for ref in set(refs(document)):
        try:
            resolver.lookup(ref)
        except Exception as exc:  # noqa: BLE001 - collect every failure, report them all
            unresolved.append(f"{ref}: {type(exc).__name__}")
    assert unresolved == []


@pytest.mark.parametrize("name", sorted(schemas.openapi()["components"]["schemas"]))
def test_every_component_schema_is_valid_draft_2020_12(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schemas.openapi()["components"]["schemas"][name])


def test_every_tenant_operation_documents_401_and_every_item_404() -> None:
    missing = []
    for method, path, operation in operations():
        responses = operation["responses"]
        if operation.get("security") != [] and "401" not in responses:
            missing.append(f"{method} {path}: 401")
        if "{" in path and "404" not in responses:
            missing.append(f"{method} {path}: 404")
    assert missing == []


def test_every_operation_with_a_body_documents_the_body_errors() -> None:
    # OAuth2's form endpoints answer a wrong content type or field as RFC 6749's 400.
    json_errors, form_errors = ("400", "413", "415", "422"), ("400", "413")
    missing = [
        f"{method} {path}: {status}"
        for method, path, operation in operations()
        if "requestBody" in operation
        for status in (
            json_errors
            if "application/json" in operation["requestBody"]["content"]
            else form_errors
        )
        if status not in operation["responses"]
    ]
    assert missing == []


def test_every_list_operation_documents_a_bad_query_as_400() -> None:
    missing = [
        f"{method} {path}"
        for method, path, operation in operations()
        if any(p.get("$ref", "").endswith("/Limit") for p in operation.get("parameters", []))
        and "400" not in operation["responses"]
    ]
    assert missing == []


def test_the_list_schemas_describe_the_order_the_api_uses() -> None:
    components = schemas.openapi()["components"]["schemas"]
    lists = [name for name in components if name.endswith("List")]

    assert lists
    assert [name for name in lists if "oldest first" in components[name]["description"]] == []
