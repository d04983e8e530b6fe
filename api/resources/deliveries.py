"""`/v1/deliveries`: where each event went, every attempt, and retrying one now."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.resources.events import Enqueue, publish_quietly
from api.validation import choice_param, text_param
from engine.db.models import DELIVERY_STATES
from engine.deliveries import log as delivery_log
from engine.deliveries import quarantine
from engine.settings import Settings


class Deliveries:
    """The collection, each item, an item's attempts, and retrying an item now."""

    scopes = {"GET": "deliveries:read", "POST": "deliveries:write"}

    def __init__(self, settings: Settings, enqueue: Enqueue) -> None:
        self.settings = settings
        self.enqueue = enqueue

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = delivery_log.list_deliveries(
            principal(req).tenant_id,
            limit=limit,
            cursor=cursor,
            event_id=text_param(req, "event_id", max_length=64),
            endpoint_id=text_param(req, "endpoint_id", max_length=64),
            status=choice_param(req, "status", DELIVERY_STATES),
        )
        resp.media = views.page(page, views.delivery)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, delivery_id: str) -> None:
        delivery = delivery_log.get_delivery(principal(req).tenant_id, delivery_id)
        resp.media = views.delivery(delivery)

    def on_get_attempts(self, req: falcon.Request, resp: falcon.Response, delivery_id: str) -> None:
        limit, cursor = paging(req)
        tenant_id = principal(req).tenant_id
        page = delivery_log.list_attempts(tenant_id, delivery_id, limit=limit, cursor=cursor)
        standard = delivery_log.standard_body(delivery_log.get_delivery(tenant_id, delivery_id))
        resp.media = views.page(
            page, lambda row: views.attempt(row, delivery_log.sent_body(row, standard))
        )

    def on_post_retry(self, req: falcon.Request, resp: falcon.Response, delivery_id: str) -> None:
        delivery = delivery_log.get_delivery(principal(req).tenant_id, delivery_id)
        queued = quarantine.retry_now(delivery, lease_s=self.settings.fan_out_lease_s)
        publish_quietly(self.enqueue, "deliver", queued.id)
        resp.status = falcon.HTTP_202
        resp.media = views.delivery(queued)
