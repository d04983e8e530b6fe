"""`/v1/tenants`: the admin creates, lists, reads, changes, suspends, resumes, deletes tenants."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging
from api.validation import choice_param, read_json
from engine.db.models import TENANT_STATES
from engine.events.catalog_cache import CatalogCache
from engine.lifecycle import tenants as lifecycle
from engine.secretbox import SecretBox
from engine.settings import Settings
from engine.tenancy.credentials import CredentialGeneration
from engine.tenancy.tenants import create_tenant, update_tenant


class Tenants:
    """The collection (`on_get`, `on_post`) and each item, for the admin only."""

    auth = "admin"

    def __init__(
        self,
        settings: Settings,
        credentials: CredentialGeneration,
        catalogs: CatalogCache,
        box: SecretBox,
    ) -> None:
        self.settings = settings
        self.box = box  # seals the alert channels' secrets; fingerprints them in answers
        self.credentials = credentials  # told of each change: principals carry the tenant
        self.catalogs = catalogs  # forgets the tenant: its strict mode may have changed

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "tenant_create", self.settings.max_body_bytes)
        tenant, api_key = create_tenant(body["name"])
        self.credentials.changed()  # its key's prefix may be remembered as unknown
        resp.status = falcon.HTTP_201
        resp.media = views.tenant(tenant, api_key)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        status = choice_param(req, "status", TENANT_STATES)
        page = lifecycle.list_tenants(limit=limit, cursor=cursor, status=status)
        resp.media = views.page(page, lambda row: views.tenant_detail(row, self.box))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        resp.media = views.tenant_detail(lifecycle.get_tenant(tenant_id), self.box)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        body = read_json(req, "tenant_update", self.settings.max_body_bytes)
        tenant = update_tenant(tenant_id, body, credentials=self.credentials, box=self.box)
        self.catalogs.forget(tenant_id)
        resp.media = views.tenant_detail(tenant, self.box)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        tenant = lifecycle.delete(tenant_id, credentials=self.credentials)
        resp.status = falcon.HTTP_202
        resp.media = views.tenant_detail(tenant, self.box)

    def on_post_suspend(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        tenant = lifecycle.suspend(tenant_id, credentials=self.credentials)
        resp.media = views.tenant_detail(tenant, self.box)

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        tenant = lifecycle.resume(tenant_id, credentials=self.credentials)
        resp.media = views.tenant_detail(tenant, self.box)
