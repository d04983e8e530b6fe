"""`/v1/keys`: a tenant's API keys, issued (shown once), listed and revoked."""

from __future__ import annotations

import falcon

from api import views
from api.resources import paging, principal
from api.validation import read_json
from engine.settings import Settings
from engine.tenancy import keys
from engine.tenancy.credentials import CredentialGeneration


class Keys:
    """The collection (`on_get`, `on_post`) and each item (`on_delete_item`)."""

    scopes = {"GET": "keys:manage", "POST": "keys:manage", "DELETE": "keys:manage"}

    def __init__(self, settings: Settings, credentials: CredentialGeneration) -> None:
        self.settings = settings
        self.credentials = credentials  # told of each revocation: the API's caches read it

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "key_create", self.settings.max_body_bytes)
        caller = principal(req)
        row, api_key = keys.create_key(
            caller.tenant_id, body.get("name"), body["scopes"], held=caller.scopes
        )
        self.credentials.changed()  # its prefix may be remembered as unknown
        resp.status = falcon.HTTP_201
        resp.media = {**views.key(row), "api_key": api_key}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = keys.list_keys(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = views.page(page, views.key)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        caller = principal(req)
        keys.revoke_key(caller.tenant_id, key_id, held=caller.scopes, credentials=self.credentials)
        resp.status = falcon.HTTP_204
