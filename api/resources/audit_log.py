"""`/v1/audit-log`: who changed what, newest first; a tenant's own, or everyone's for the admin."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.validation import text_param, time_param
from engine.audit import log


class AuditLog:
    """The collection (`on_get`): the admin token, or a tenant credential with `audit:read`."""

    auth = "tenant_or_admin"
    scopes = {"GET": "audit:read"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        admin = bool(getattr(req.context, "admin", False))
        page = log.list_entries(
            text_param(req, "tenant_id") if admin else principal(req).tenant_id,
            everyone=admin,
            since=time_param(req, "since"),
            until=time_param(req, "until"),
            action=text_param(req, "action", max_length=255),
            limit=limit,
            cursor=cursor,
        )
        resp.media = views.page(page, views.audit_entry)
