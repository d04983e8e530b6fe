"""Helpers for the API tests: a client that checks every answer against the OpenAPI document.

`Api` wraps `falcon.testing.TestClient`; each call names the route by its
template (`/v1/endpoints/{endpoint_id}`), so the answer can be validated
against what `schemas.openapi()` documents for that method, path and status.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import jsonschema
from falcon.testing import Result, TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import schemas
from actors.middleware import DeliveryPolicy
from actors.pipeline import Pipeline
from actors.runtime import Runtime
from engine.db.models import utcnow
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.settings import Settings

OPENAPI_URI = "urn:hookline:openapi"
PROBLEM_JSON = "application/problem+json"
_UNSET: Any = object()


def strict_json(text: str) -> Any:
    """Parse JSON as RFC 8259 defines it: no NaN, no Infinity."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"the response carries {name}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(
        OPENAPI_URI, Resource.from_contents(schemas.openapi(), DRAFT202012)
    )


def _pointer(parts: tuple[str, ...]) -> str:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "#/" + "/".join(quote(part, safe="") for part in escaped)


def _follow(node: dict[str, Any], parts: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A response or header object and where it lives, after its `$ref`, if any."""
    ref = node.get("$ref")
    if ref is None:
        return node, parts
    target = tuple(ref.removeprefix("#/").split("/"))
    found: Any = schemas.openapi()
    for part in target:
        found = found[part]
    return found, target


def documented_statuses(method: str, path_template: str) -> list[str]:
    """The statuses the document lists for one operation."""
    operation = schemas.openapi()["paths"].get(path_template, {}).get(method.lower())
    assert operation is not None, f"{method} {path_template} is not in the OpenAPI document"
    return sorted(operation["responses"])


def assert_matches_openapi(
    method: str,
    path_template: str,
    status: int,
    body: Any,
    *,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Fail unless the answer is one the OpenAPI document describes for this operation."""
    statuses = documented_statuses(method, path_template)
    assert str(status) in statuses, (
        f"{method} {path_template} answered {status}; the document lists {statuses}"
    )
    where = ("paths", path_template, method.lower(), "responses", str(status))
    response, where = _follow(
        schemas.openapi()["paths"][path_template][method.lower()]["responses"][str(status)], where
    )
    content = response.get("content") or {}
    if not content:
        assert body is None, f"{method} {path_template} {status} is documented without a body"
        return
    media_type = (content_type or next(iter(content))).split(";")[0].strip()
    assert media_type in content, (
        f"{method} {path_template} {status} answered {media_type}; documented: {sorted(content)}"
    )
    validator = jsonschema.Draft202012Validator(
        {"$ref": OPENAPI_URI + _pointer((*where, "content", media_type, "schema"))},
        registry=_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    assert error is None, (
        f"{method} {path_template} {status} does not match the document at "
        f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
    )
    for name, header in (response.get("headers") or {}).items():
        header, _ = _follow(header, ())
        if header.get("required") and headers is not None:
            assert name in headers, f"{method} {path_template} {status} lacks the {name} header"


def assert_problem(result: Result, status: int, field: str | None = _UNSET) -> dict[str, Any]:
    """Fail unless the answer is problem+json with this status (and field, if given)."""
    assert result.status_code == status, (result.status_code, result.text[:500])
    assert result.headers["content-type"].startswith(PROBLEM_JSON)
    problem = strict_json(result.text)
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["type"].startswith("urn:hookline:problem:")
    assert problem["status"] == status
    if field is not _UNSET:
        assert problem.get("field") == field, problem
    return problem


def outcome(status_code: int | None, **fields: Any) -> Outcome:
    """An attempt's outcome, as the delivery client would report it."""
    return Outcome(started_at=utcnow(), duration_ms=12.5, status_code=status_code, **fields)


def attempt(delivery_id: str, result: Outcome, *, max_age_s: float = 86400) -> None:
    """Make one attempt the way a worker does: claim, then record the outcome."""
    claimed = deliveries.claim(delivery_id, lease_s=30)
    assert claimed is not None
    policy = DeliveryPolicy.of([60, 300], max_age_s, rand=lambda: 0.5)
    deliveries.record(claimed, result, decide=policy.decide)


def worker_runtime(
    settings: Settings, database: Any, client: Any, loop: asyncio.AbstractEventLoop
) -> tuple[Pipeline, Runtime]:
    """A worker's runtime in this process: a real attempt pipeline on `loop`, recording on
    `database`, sending through `client` (a fake with `send`), publishing nothing."""
    pipeline = Pipeline(
        record=functools.partial(
            deliveries.record_many, decide=DeliveryPolicy.of([5.0], 3600.0).decide
        ),
        after_record=lambda *_args: None,
        connection=database.connection_context,
        handoff_s=5.0,
        max_in_flight=100,
    )
    runtime = Runtime(
        settings=settings,
        database=database,
        publisher=SimpleNamespace(enqueue_many=lambda kind, ids: len(ids)),  # type: ignore[arg-type]
        client=client,
        pipeline=pipeline,
        loop=loop,
    )
    return pipeline, runtime


class Recorder:
    """A fake `enqueue`: remembers every `(kind, id)` published and confirms it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, kind: str, ident: str) -> bool:
        self.calls.append((kind, ident))
        return True


class BrokenBroker(Recorder):
    """A fake `enqueue` whose broker is down: it remembers the try, then raises."""

    def __call__(self, kind: str, ident: str) -> bool:
        super().__call__(kind, ident)
        raise ConnectionError("broker unreachable")


class UnconfirmedBroker(Recorder):
    """A fake `enqueue` whose broker never confirms the publish."""

    def __call__(self, kind: str, ident: str) -> bool:
        super().__call__(kind, ident)
        return False


class Api:
    """A `TestClient` whose calls name the route template and are checked against the document.

    `key` is sent as `Authorization: Bearer <key>`; pass `auth=` to send a raw header instead.
    """

    def __init__(self, client: TestClient, key: str | None = None) -> None:
        self.client = client
        self.key = key

    def as_key(self, key: str | None) -> Api:
        """The same app, called with another credential."""
        return Api(self.client, key)

    def call(
        self,
        method: str,
        template: str,
        *,
        doc: Any = _UNSET,
        raw: bytes | None = None,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        auth: str | None = _UNSET,
        check: bool = True,
        remote_addr: str | None = None,
        **path: str,
    ) -> Result:
        """Make one request; unless `check=False`, validate the answer against the document."""
        sent = dict(headers or {})
        if auth is _UNSET and self.key is not None:
            sent["Authorization"] = f"Bearer {self.key}"
        elif auth is not _UNSET and auth is not None:
            sent["Authorization"] = auth
        if doc is not _UNSET:
            raw = json.dumps(doc).encode()
        if raw is not None and content_type is not None:
            sent["Content-Type"] = content_type
        result = self.client.simulate_request(
            method,
            template.format(**path),
            body=raw,
            headers=sent,
            params=params,
            remote_addr=remote_addr,
        )
        assert result.status_code < 500 or result.status_code == 503, result.text[:500]
        if check:
            body = strict_json(result.text) if result.text else None
            assert_matches_openapi(
                method,
                template,
                result.status_code,
                body,
                content_type=result.headers.get("content-type"),
                headers=result.headers,
            )
        return result

    def get(self, template: str, **kwargs: Any) -> Result:
        return self.call("GET", template, **kwargs)

    def post(self, template: str, doc: Any = _UNSET, **kwargs: Any) -> Result:
        return self.call("POST", template, doc=doc, **kwargs)

    def patch(self, template: str, doc: Any = _UNSET, **kwargs: Any) -> Result:
        return self.call("PATCH", template, doc=doc, **kwargs)

    def delete(self, template: str, **kwargs: Any) -> Result:
        return self.call("DELETE", template, **kwargs)

    def walk(self, template: str, *, limit: int, **kwargs: Any) -> list[list[dict[str, Any]]]:
        """Every page of a list route, following `next_cursor` to the end."""
        pages: list[list[dict[str, Any]]] = []
        params: dict[str, Any] = {"limit": limit, **kwargs.pop("params", {})}
        while True:
            result = self.get(template, params=params, **kwargs)
            assert result.status_code == 200, result.text
            pages.append(result.json["data"])
            if result.json["next_cursor"] is None:
                return pages
            params["cursor"] = result.json["next_cursor"]
            assert len(pages) < 100, "next_cursor never ends"
