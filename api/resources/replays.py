"""`/v1/replays`: finished deliveries sent again, paced; followed and cancelled.

Replays act on deliveries, so they take the deliveries scopes: `deliveries:read` to
follow, `deliveries:write` to start and cancel.
"""

from __future__ import annotations

from typing import Any

import falcon

from api import views
from api.resources import paging, principal
from api.validation import parse_time, read_json
from engine.endpoints import crud as endpoints
from engine.replays import replays
from engine.replays.matching import REPLAYABLE, Selection, count
from engine.settings import Settings


def window(body: dict[str, Any]) -> tuple[Any, Any]:
    """A request's `since` and `until` (None when absent), parsed."""
    until = parse_time(body["until"], "until") if "until" in body else None
    return parse_time(body["since"], "since"), until


def selection_of(tenant_id: str, body: dict[str, Any]) -> Selection:
    """The replay a `replay_create` body asks for, checked.

    Raises:
        NotFoundError: its `endpoint_id` is not one of the tenant's live endpoints.
        InvalidInputError: its window or states are wrong.
    """
    if "endpoint_id" in body:
        endpoints.get_endpoint(tenant_id, body["endpoint_id"])
    since, until = window(body)
    types = body.get("event_types")
    return Selection(
        tenant_id,
        since,
        until,
        body.get("endpoint_id"),
        tuple(types) if types is not None else None,
        tuple(body.get("statuses", REPLAYABLE)),
    ).check()


class Replays:
    """The collection (`on_get`, `on_post`), each item, and cancelling one."""

    scopes = {"GET": "deliveries:read", "POST": "deliveries:write"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "replay_create", self.settings.max_body_bytes)
        selection = selection_of(principal(req).tenant_id, body)
        if body.get("dry_run"):
            resp.media = views.dry_run(count(selection))
            return
        rate = body.get("rate_per_s", self.settings.replay_rate_per_s)
        replay = replays.start(selection, rate_per_s=rate)
        resp.status = falcon.HTTP_202
        resp.media = views.replay(replays.progress(replay))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = replays.list_replays(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = {
            "data": [views.replay(p) for p in replays.progress_many(page.items)],
            "next_cursor": page.next_cursor,
        }

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, replay_id: str) -> None:
        replay = replays.get(principal(req).tenant_id, replay_id)
        resp.media = views.replay(replays.progress(replay))

    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, replay_id: str) -> None:
        replay = replays.cancel(principal(req).tenant_id, replay_id)
        resp.media = views.replay(replays.progress(replay))
