"""Falcon middleware: request ids and logs, a database connection per request, auth."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import falcon
import structlog

from api.errors import Problem
from engine.settings import Settings
from engine.tenants import authenticate_key, is_admin_token

log = structlog.get_logger("hookline.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """Binds a request id to the logs and answers it in `X-Request-Id`."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        offered = req.get_header("X-Request-Id")
        request_id = offered if offered and _REQUEST_ID.match(offered) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        request_id = getattr(req.context, "request_id", None)
        if request_id:
            resp.set_header("X-Request-Id", request_id)
        started = getattr(req.context, "started", None)
        elapsed_ms = (time.perf_counter() - started) * 1000 if started else None
        log.debug(
            "request_handled",
            method=req.method,
            path=req.path,
            status=resp.status_code,
            duration_ms=elapsed_ms,
        )
        structlog.contextvars.clear_contextvars()


class Database:
    """Opens a pooled connection for each routed request and always gives it back."""

    def __init__(self, database: Any) -> None:
        self.database = database

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if resource is not None and getattr(resource, "uses_database", True):
            self.database.connect(reuse_if_open=True)
            req.context.db_open = True

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if getattr(req.context, "db_open", False) and not self.database.is_closed():
            self.database.close()


class Auth:
    """Checks the bearer credential a resource asks for.

    A resource declares `auth = "tenant"` (the default), `"admin"` or `None`.
    The tenant's principal is put on `req.context.principal`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        kind = getattr(resource, "auth", "tenant") if resource is not None else None
        if kind is None:
            return
        token = _bearer(req)
        if kind == "admin":
            if not self.settings.admin_token:
                raise Problem(
                    403,
                    "admin-disabled",
                    "Admin API disabled",
                    "Set HOOKLINE_ADMIN_TOKEN to use the admin API, "
                    "or run `hookline tenants create`.",
                )
            if not is_admin_token(token, self.settings.admin_token):
                raise _unauthorized("The admin token is missing or wrong.")
            return
        principal = authenticate_key(token)
        if principal is None:
            raise _unauthorized("The API key is missing, unknown or revoked.")
        req.context.principal = principal
        structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)


def _bearer(req: falcon.Request) -> str:
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send `Authorization: Bearer <api key>`.")
    return token.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        field="Authorization",
        headers={"WWW-Authenticate": 'Bearer realm="hookline"'},
    )
