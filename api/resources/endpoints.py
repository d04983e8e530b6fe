"""`/v1/endpoints`: where a tenant's events are delivered."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.validation import parse_time, read_json
from engine import endpoints, quarantine
from engine.settings import Settings
from engine.ssrf import AddressPolicy


class Endpoints:
    """The collection (`on_get`, `on_post`) and each item (`*_item`)."""

    def __init__(self, settings: Settings, policy: AddressPolicy) -> None:
        self.settings = settings
        self.policy = policy

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "endpoint_create", self.settings.max_body_bytes)
        row = endpoints.create_endpoint(principal(req).tenant_id, body, self.policy)
        resp.status = falcon.HTTP_201
        resp.media = {**views.endpoint(row), "secret": row.secret}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = endpoints.list_endpoints(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = views.page(page, views.endpoint)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        resp.media = views.endpoint(endpoints.get_endpoint(principal(req).tenant_id, endpoint_id))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_json(req, "endpoint_update", self.settings.max_body_bytes)
        row = endpoints.update_endpoint(principal(req).tenant_id, endpoint_id, body, self.policy)
        resp.media = views.endpoint(row)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        endpoints.delete_endpoint(principal(req).tenant_id, endpoint_id)
        resp.status = falcon.HTTP_204

    def on_post_recover(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_json(req, "recover_request", self.settings.max_body_bytes)
        endpoint = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        until = parse_time(body["until"], "until") if "until" in body else None
        count = quarantine.recover(
            endpoint.tenant_id, endpoint.id, since=parse_time(body["since"], "since"), until=until
        )
        resp.status = falcon.HTTP_202
        resp.media = {"recovered": count}

    def on_get_secret(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        resp.media = {"secret": row.secret}
