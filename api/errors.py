"""One mapping from every error to RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi
import structlog

from engine.db.connect import UNAVAILABLE_ERRORS
from engine.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from engine.events.payload_schema import SchemaViolationError

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:hookline:problem:"
RETRY_AFTER_S = "2"


class Problem(falcon.HTTPError):
    """An HTTP error with a stable `type` slug, a detail and optionally the field at fault."""

    def __init__(
        self,
        status: str | int,
        slug: str,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, title=title, description=detail, headers=headers)
        self.slug = slug
        self.field = field
        self.errors = errors

    def to_dict(self, obj_type: Any = dict) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status_code,
            "detail": self.description,
        }
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        return body


# Falcon's own errors, by status, get a stable slug too.
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    411: "length-required",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    431: "headers-too-large",
    503: "unavailable",
}


def serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Render any HTTPError as problem+json, whatever the client prefers."""
    if isinstance(exc, Problem):
        body = exc.to_dict()
    else:
        status = exc.status_code
        body = {
            "type": TYPE_PREFIX + _SLUGS.get(status, "http-error"),
            "title": exc.title or falcon.code_to_http_status(status)[4:],
            "status": status,
            "detail": exc.description or exc.title or "",
        }
    body["instance"] = req.path
    resp.content_type = PROBLEM_JSON
    resp.media = body


def _not_found(req: falcon.Request, resp: falcon.Response, exc: NotFoundError, params: Any) -> None:
    raise Problem(404, "not-found", "Not found", str(exc))


def _invalid(
    req: falcon.Request, resp: falcon.Response, exc: InvalidInputError, params: Any
) -> None:
    raise invalid_input(exc)


def invalid_input(exc: InvalidInputError, at: str = "") -> Problem:
    """The 422 for a value the domain refuses; its field under `at` (`events.3`) if given."""
    field = f"{at}.{exc.field}" if at else exc.field
    return Problem(
        422,
        "validation",
        "Invalid request",
        f"{field}: {exc.message}",
        field=field,
        errors=[{"field": field, "message": exc.message}],
    )


def _violated(
    req: falcon.Request, resp: falcon.Response, exc: SchemaViolationError, params: Any
) -> None:
    raise schema_problem(exc)


def schema_problem(exc: SchemaViolationError, at: str = "") -> Problem:
    """The 422 for a payload its type's schema refuses: each violation, a pointer into `payload`."""
    field = f"{at}.payload" if at else "payload"
    listed = [
        {"field": field, "pointer": found.pointer, "message": found.message}
        for found in exc.violations
    ]
    return Problem(
        422,
        "payload-schema",
        "Payload does not match its schema",
        f"The payload breaks version {exc.version} of the schema of {exc.event_type!r} "
        f"({len(listed)} violation{'s' if len(listed) != 1 else ''} listed); first: "
        f"{exc.message}",
        field=field,
        errors=listed,
    )


def _forbidden(
    req: falcon.Request, resp: falcon.Response, exc: ForbiddenError, params: Any
) -> None:
    raise Problem(403, "forbidden", "Forbidden", exc.message)


def _conflict(req: falcon.Request, resp: falcon.Response, exc: ConflictError, params: Any) -> None:
    raise Problem(409, "conflict", "Conflict", str(exc))


def _unavailable(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    log.warning("database_unavailable", error=str(exc).strip()[:300])
    raise Problem(
        503,
        "unavailable",
        "Service unavailable",
        "The database cannot be reached; nothing was stored. Retry later.",
        headers={"Retry-After": RETRY_AFTER_S},
    )


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    log.exception("unhandled_error", path=req.path, method=req.method)
    raise Problem(500, "internal", "Internal error", "An unexpected error occurred.")


Handler = Callable[[falcon.Request, falcon.Response, Any, Any], None]


def _on_loop(handler: Handler) -> Callable[..., Awaitable[None]]:
    """An ASGI app's error handlers are coroutines; these only build an answer."""

    async def handle(
        req: falcon.Request, resp: falcon.Response, exc: Any, params: Any, **_: Any
    ) -> None:
        handler(req, resp, exc, params)

    return handle


def problem_body(slug: str, title: str, status: int, detail: str) -> bytes:
    """A problem document as bytes, for answers written below Falcon (`api.server`)."""
    body = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail}
    return json.dumps(body, separators=(",", ":")).encode()


def install(app: falcon.asgi.App) -> None:
    """Wire the mapping into the app; the most specific handler wins."""
    wrap = _on_loop
    app.resp_options.xml_error_serialization = False
    app.set_error_serializer(serialize)
    app.add_error_handler(Exception, wrap(_unexpected))
    app.add_error_handler(NotFoundError, wrap(_not_found))
    app.add_error_handler(InvalidInputError, wrap(_invalid))
    app.add_error_handler(SchemaViolationError, wrap(_violated))
    app.add_error_handler(ConflictError, wrap(_conflict))
    app.add_error_handler(ForbiddenError, wrap(_forbidden))
    for error in UNAVAILABLE_ERRORS:  # UnavailableError, and peewee's own where they leak
        app.add_error_handler(error, wrap(_unavailable))
