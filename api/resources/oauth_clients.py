"""`/v1/oauth-clients`: a tenant's machine clients of the token endpoint (`/oauth/token`),
registered (the secret shown once), listed, read and deleted (their tokens die with them)."""

from __future__ import annotations

from typing import Any

import falcon

from api.resources import paging, principal
from api.validation import read_json
from api.views import timestamp
from engine.db.models import OAuthClient
from engine.settings import Settings
from engine.tenancy import oauth


def client_view(row: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": row.id,
        "name": row.name,
        "scopes": list(row.scopes),
        "created_at": timestamp(row.created_at),
    }


class OAuthClients:
    """The collection (`on_get`, `on_post`) and each item (`on_get_item`, `on_delete_item`)."""

    scopes = {"GET": "keys:manage", "POST": "keys:manage", "DELETE": "keys:manage"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "oauth_client_create", self.settings.max_body_bytes)
        caller = principal(req)
        row, secret = oauth.create_client(
            caller.tenant_id, body["name"], body["scopes"], held=caller.scopes
        )
        req.context.audit_params = {"client_id": row.id}  # the audit log's target
        resp.status = falcon.HTTP_201
        resp.media = {**client_view(row), "client_secret": secret}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = oauth.list_clients(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = {"data": [client_view(r) for r in page.items], "next_cursor": page.next_cursor}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        resp.media = client_view(oauth.get_client(principal(req).tenant_id, client_id))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        caller = principal(req)
        oauth.delete_client(caller.tenant_id, client_id, held=caller.scopes)
        resp.status = falcon.HTTP_204
