"""`/v1/endpoints`: where a tenant's events are delivered."""

from __future__ import annotations

import falcon
import structlog

from api import views
from api.errors import RETRY_AFTER_S, Problem
from api.resources import paging, principal
from api.resources.events import Enqueue, publish_quietly
from api.resources.replays import window
from api.validation import read_json, read_optional_json
from engine.breakers import parking
from engine.breakers import store as health
from engine.breakers.state import Policy
from engine.db.models import ENDPOINT_UNVERIFIED, QUARANTINED
from engine.deliveries import flow_view
from engine.deliveries.test_events import send_test
from engine.endpoints import crud as endpoints
from engine.replays import backfill, pause, replays
from engine.replays.matching import Selection
from engine.secretbox import SecretBox
from engine.settings import Settings
from engine.ssrf import AddressPolicy

log = structlog.get_logger("hookline.api")


class Endpoints:
    """The collection (`on_get`, `on_post`) and each item (`*_item`)."""

    scopes = {
        "GET": "endpoints:read",
        "POST": "endpoints:write",
        "PATCH": "endpoints:write",
        "DELETE": "endpoints:write",
    }

    def __init__(
        self, settings: Settings, policy: AddressPolicy, box: SecretBox, enqueue: Enqueue
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.box = box
        self.enqueue = enqueue

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "endpoint_create", self.settings.max_body_bytes)
        row, secret = endpoints.create_endpoint(
            principal(req).tenant_id,
            body,
            self.policy,
            self.box,
            verify_default=self.settings.verify_endpoints_default,
        )
        if row.status == ENDPOINT_UNVERIFIED:
            publish_quietly(self.enqueue, "verify_endpoint", row.id)
        resp.status = falcon.HTTP_201
        resp.media = {**views.endpoint(row, self.box), "secret": secret}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = endpoints.list_endpoints(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = views.page(page, lambda row: views.endpoint(row, self.box))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        resp.media = views.endpoint(
            endpoints.get_endpoint(principal(req).tenant_id, endpoint_id), self.box
        )

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_json(req, "endpoint_update", self.settings.max_body_bytes)
        row = endpoints.update_endpoint(
            principal(req).tenant_id, endpoint_id, body, self.policy, self.box
        )
        if "url" in body and row.status == ENDPOINT_UNVERIFIED:
            publish_quietly(self.enqueue, "verify_endpoint", row.id)
        resp.media = views.endpoint(row, self.box)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        endpoints.delete_endpoint(principal(req).tenant_id, endpoint_id)
        resp.status = falcon.HTTP_204

    def on_post_recover(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_json(req, "recover_request", self.settings.max_body_bytes)
        endpoint = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        since, until = window(body)
        selection = Selection(endpoint.tenant_id, since, until, endpoint.id, None, (QUARANTINED,))
        replay = replays.start(
            selection, rate_per_s=self.settings.replay_rate_per_s, kind=replays.RECOVER
        )
        resp.status = falcon.HTTP_202
        resp.set_header("Location", f"/v1/replays/{replay.id}")
        resp.media = {"recovered": replay.matched}

    def on_post_backfill(
        self, req: falcon.Request, resp: falcon.Response, endpoint_id: str
    ) -> None:
        body = read_json(req, "backfill_request", self.settings.max_body_bytes)
        endpoint = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        since, until = window(body)
        if body.get("dry_run"):
            Selection(endpoint.tenant_id, since, until).check()
            resp.media = views.dry_run(backfill.count(endpoint, since, until))
            return
        rate = body.get("rate_per_s", self.settings.replay_rate_per_s)
        replay = backfill.start(endpoint, since, until, rate_per_s=rate)
        resp.status = falcon.HTTP_202
        resp.media = views.replay(replays.progress(replay))

    def on_post_pause(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        resp.media = views.endpoint(pause.pause(principal(req).tenant_id, endpoint_id), self.box)

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row, resumed = pause.resume(
            principal(req).tenant_id, endpoint_id, rate_per_s=self.settings.replay_rate_per_s
        )
        resp.media = {"endpoint": views.endpoint(row, self.box), "resumed": resumed}

    def on_get_health(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        breaker = health.view(row, Policy.from_settings(self.settings))
        resp.media = views.endpoint_health(breaker, flow_view.view(row))

    def on_post_enable(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_optional_json(req, "endpoint_enable", self.settings.max_body_bytes)
        row, replayed = parking.enable(
            principal(req).tenant_id, endpoint_id, replay=bool(body.get("replay"))
        )
        resp.media = {"endpoint": views.endpoint(row, self.box), "replayed": replayed}

    def on_post_verify(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        _publish_or_503(self.enqueue, "verify_endpoint", row.id)
        resp.status = falcon.HTTP_202
        resp.media = views.endpoint(row, self.box)

    def on_post_test(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_optional_json(req, "endpoint_test", self.settings.max_body_bytes)
        sent = send_test(
            principal(req).tenant_id,
            endpoint_id,
            body.get("event_type"),
            body.get("data"),
            lease_s=self.settings.fan_out_lease_s,
        )
        # Once committed; if this fails, the delivery's lease has the scheduler publish it.
        publish_quietly(self.enqueue, "deliver", sent.delivery.id)
        resp.status = falcon.HTTP_202
        resp.media = {"event_id": sent.event.id, "delivery_id": sent.delivery.id}


def _publish_or_503(enqueue: Enqueue, kind: str, ident: str) -> None:
    """Publish now, or answer 503: nothing else would ever send this message."""
    try:
        confirmed = enqueue(kind, ident)
    except Exception as exc:  # noqa: BLE001 - any broker failure is the same answer
        log.warning("publish_failed", kind=kind, ident=ident, error=f"{type(exc).__name__}: {exc}")
        confirmed = False
    if not confirmed:
        raise Problem(
            503,
            "unavailable",
            "Service unavailable",
            "The broker did not accept the request; nothing was sent. Retry later.",
            headers={"Retry-After": RETRY_AFTER_S},
        )
