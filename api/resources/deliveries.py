"""`/v1/deliveries`: where each event went, and every attempt."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.validation import choice_param, text_param
from engine import deliveries
from engine.models import DELIVERY_STATES


class Deliveries:
    """The collection, each item, and an item's attempts."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = deliveries.list_deliveries(
            principal(req).tenant_id,
            limit=limit,
            cursor=cursor,
            event_id=text_param(req, "event_id", max_length=64),
            endpoint_id=text_param(req, "endpoint_id", max_length=64),
            status=choice_param(req, "status", DELIVERY_STATES),
        )
        resp.media = views.page(page, views.delivery)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, delivery_id: str) -> None:
        resp.media = views.delivery(deliveries.get_delivery(principal(req).tenant_id, delivery_id))

    def on_get_attempts(self, req: falcon.Request, resp: falcon.Response, delivery_id: str) -> None:
        limit, cursor = paging(req)
        page = deliveries.list_attempts(
            principal(req).tenant_id, delivery_id, limit=limit, cursor=cursor
        )
        resp.media = views.page(page, views.attempt)
