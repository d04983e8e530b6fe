"""`/v1/quarantine`: deliveries that will not be attempted again on their own."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.validation import text_param, time_param
from engine.deliveries import quarantine


class Quarantine:
    """`GET /v1/quarantine`: deliveries that will not be attempted again on their own."""

    scopes = {"GET": "deliveries:read"}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = quarantine.list_quarantine(
            principal(req).tenant_id,
            limit=limit,
            cursor=cursor,
            endpoint_id=text_param(req, "endpoint_id", max_length=64),
            event_type=text_param(req, "event_type", max_length=128),
            since=time_param(req, "since"),
            until=time_param(req, "until"),
        )
        resp.media = views.page(page, views.delivery)
