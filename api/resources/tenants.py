"""`/v1/tenants`: the admin creates tenants and sets their rate limits."""

from __future__ import annotations

import falcon

from api import views
from api.validation import read_json
from engine.events.catalog_cache import CatalogCache
from engine.settings import Settings
from engine.tenancy.credentials import CredentialGeneration
from engine.tenancy.tenants import create_tenant, update_tenant


class Tenants:
    """The collection (`on_post`) and each item (`on_patch_item`), for the admin only."""

    auth = "admin"

    def __init__(
        self, settings: Settings, credentials: CredentialGeneration, catalogs: CatalogCache
    ) -> None:
        self.settings = settings
        self.credentials = credentials  # told of each change: principals carry rate limits
        self.catalogs = catalogs  # forgets the tenant: its strict mode may have changed

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "tenant_create", self.settings.max_body_bytes)
        tenant, api_key = create_tenant(body["name"])
        resp.status = falcon.HTTP_201
        resp.media = views.tenant(tenant, api_key)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        body = read_json(req, "tenant_update", self.settings.max_body_bytes)
        tenant = update_tenant(tenant_id, body, credentials=self.credentials)
        self.catalogs.forget(tenant_id)
        resp.media = views.tenant_detail(tenant)
