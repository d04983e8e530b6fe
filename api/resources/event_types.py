"""`/v1/event-types`: the event types a tenant declares, with their schemas and examples."""

from __future__ import annotations

import falcon

from api import views
from api.errors import Problem
from api.resources import paging, principal
from api.validation import read_json
from engine.events import catalog
from engine.events.catalog_cache import CatalogCache
from engine.settings import Settings


class EventTypes:
    """The collection (`on_get`, `on_post`) and each item by name (`*_item`)."""

    scopes = {
        "GET": "event_types:read",
        "POST": "event_types:write",
        "PATCH": "event_types:write",
        "DELETE": "event_types:write",
    }

    def __init__(self, settings: Settings, cache: CatalogCache) -> None:
        self.settings = settings
        self.cache = cache  # this process sees its own changes at once

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "event_type_definition_create", self.settings.max_body_bytes)
        tenant_id = principal(req).tenant_id
        row = catalog.create_event_type(tenant_id, body)
        self.cache.forget(tenant_id)
        resp.status = falcon.HTTP_201
        resp.media = views.event_type(row)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        tenant_id = principal(req).tenant_id
        page = catalog.list_event_types(
            tenant_id, limit=limit, cursor=cursor, archived=_archived(req)
        )
        resp.media = {
            **views.page(page, views.event_type),
            "strict_event_types": catalog.strict_mode(tenant_id),
        }

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = views.event_type(catalog.get_event_type(principal(req).tenant_id, name))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = read_json(req, "event_type_definition_update", self.settings.max_body_bytes)
        tenant_id = principal(req).tenant_id
        row = catalog.update_event_type(tenant_id, name, body)
        self.cache.forget(tenant_id)
        resp.media = views.event_type(row)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        tenant_id = principal(req).tenant_id
        row = catalog.archive_event_type(tenant_id, name)
        self.cache.forget(tenant_id)
        resp.media = views.event_type(row)


def _archived(req: falcon.Request) -> bool | None:
    """`?archived=true|false`, or None for both.

    Raises:
        Problem: 400 naming `archived`.
    """
    raw = req.get_param("archived")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise Problem(
            400,
            "invalid-parameter",
            "Invalid query parameter",
            "archived must be true or false.",
            field="archived",
        )
    return raw == "true"
