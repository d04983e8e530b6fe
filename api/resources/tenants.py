"""`/v1/tenants`: the admin creates tenants."""

from __future__ import annotations

import falcon

from api import views
from api.validation import read_json
from engine.settings import Settings
from engine.tenants import create_tenant


class Tenants:
    auth = "admin"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "tenant_create", self.settings.max_body_bytes)
        tenant, api_key = create_tenant(body["name"])
        resp.status = falcon.HTTP_201
        resp.media = views.tenant(tenant, api_key)
