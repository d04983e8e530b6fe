"""The audit middleware: every change made through the API, recorded once it committed.

Generic by construction: a request whose method changes something (POST, PUT, PATCH,
DELETE) and that succeeded (2xx) is recorded by its route template, whichever resource
served it, so a route added later is covered without a line here
(tests/api/test_audit_log.py walks every mutating route of the OpenAPI document).
`UNAUDITED` names the routes that carry data rather than configuration.

Secrets never reach the log. The request body's fields are kept with every field the
schemas mark `"x-hookline-secret": true` replaced by "changed", and the values of those
marked `"x-hookline-secret": "values"` (an endpoint's `headers`) too; any field whose
name looks secret (`SECRET_NAME`) is replaced whatever the schemas say, and a test
holds that every such name in a request schema is marked.

The entry is written in its own transaction right after the responder's committed, on
the same thread pool: a process that dies between the two loses that entry (the change
stands). Writing it inside the responder's transaction would hold that transaction open
across the publishes some responders make after their commit.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import falcon
import structlog

import schemas
from api.offload import Offload
from engine.audit import log as audit

log = structlog.get_logger("hookline.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Data, not configuration: recording every event would double the hot path's writes.
UNAUDITED = frozenset(
    {
        "POST /v1/events",
        "POST /v1/events/batch",
        "POST /v1/transforms/preview",  # computes, stores nothing
        "POST /oauth/token",  # a client's routine, up to 60 a minute: stores nothing
        "POST /oauth/introspect",  # reads
    }
)
CHANGED = "changed"
SECRET_NAME = re.compile(
    r"secret|token|password|passwd|api_?key|routing_key|authori[sz]ation|credential|private",
    re.IGNORECASE,
)
MARK = "x-hookline-secret"
# A field's value larger than this (as JSON) is kept as its size only.
MAX_VALUE_CHARS = 2048
# The admin's record of a tenant's deletion stays when the tenant's own entries are erased.
ADMIN_ONLY = frozenset({"DELETE /v1/tenants/{tenant_id}"})


def _marked(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (property name, its mark) in a schema, at any depth."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and MARK in sub:
                yield name, sub[MARK]
        for value in node.values():
            yield from _marked(value)
    elif isinstance(node, list):
        for value in node:
            yield from _marked(value)


@functools.cache
def secret_fields() -> tuple[frozenset[str], frozenset[str]]:
    """The names the schemas mark secret, and those whose values (not keys) are."""
    marks = [pair for name in schemas.names() for pair in _marked(schemas.load(name))]
    whole = frozenset(name for name, mark in marks if mark is True)
    values = frozenset(name for name, mark in marks if mark == "values")
    return whole, values


def redact(value: Any) -> Any:
    """A request body with every secret replaced by "changed", at any depth."""
    whole, values = secret_fields()
    if isinstance(value, list):
        return [redact(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name in whole or SECRET_NAME.search(name):
            out[name] = CHANGED
        elif name in values and isinstance(item, dict):
            out[name] = {key: CHANGED for key in item}
        else:
            out[name] = redact(item)
    return out


def changes(raw: bytes | None) -> dict[str, Any] | None:
    """The fields a request body set, secrets redacted, large values kept as their size."""
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return {"body": CHANGED}
    kept = redact(body)
    for name, value in kept.items():
        size = len(json.dumps(value, ensure_ascii=False))
        if size > MAX_VALUE_CHARS:
            kept[name] = {"omitted_chars": size}
    return kept


class Audit:
    """Records each successful change after its responder returned (see the module)."""

    def __init__(self, offload: Offload) -> None:
        self.offload = offload

    async def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        req.context.audit_params = dict(params)

    async def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if not req_succeeded or req.method not in MUTATING or not 200 <= resp.status_code < 300:
            return
        action = f"{req.method} {req.uri_template}"
        if req.uri_template is None or action in UNAUDITED:
            return
        change = _change(req, resp, action)
        if change is None:
            return
        try:
            await self.offload.run(audit.record, change)
        except Exception:
            log.exception("audit_write_failed", action=action, target_id=change.target_id)


def _change(req: falcon.Request, resp: falcon.Response, action: str) -> audit.Change | None:
    """The entry for a successful change; None when no credential made it."""
    params = getattr(req.context, "audit_params", {})
    created = resp.media.get("id") if isinstance(resp.media, dict) else None
    target = next(reversed(params.values()), None) if params else created
    principal = getattr(req.context, "principal", None)
    if principal is not None:
        tenant_id, kind, actor, subject = (
            principal.tenant_id,
            principal.kind,
            principal.credential_id,
            principal.subject,
        )
    elif getattr(req.context, "admin", False):
        tenant_id = None if action in ADMIN_ONLY else params.get("tenant_id", created)
        kind, actor, subject = "admin", "admin", None
    else:
        return None
    return audit.Change(
        tenant_id=tenant_id,
        actor_kind=kind,
        actor_id=actor,
        actor_subject=subject,
        action=action,
        target_id=None if target is None else str(target),
        status_code=resp.status_code,
        changes=changes(getattr(req.context, "body", None)),
        request_id=getattr(req.context, "request_id", None),
    )
