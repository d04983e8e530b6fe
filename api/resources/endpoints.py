"""`/v1/endpoints`: where a tenant's events are delivered."""

from __future__ import annotations

import falcon
import structlog

from api import views
from api.errors import RETRY_AFTER_S, Problem
from api.resources import paging, principal
from api.resources.events import Enqueue, publish_quietly
from api.validation import parse_time, read_json, read_optional_json
from engine.breakers import parking
from engine.breakers import store as health
from engine.breakers.state import Policy
from engine.db.models import ENDPOINT_UNVERIFIED
from engine.deliveries import flow_view, quarantine
from engine.deliveries.test_events import send_test
from engine.endpoints import crud as endpoints
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
        resp.media = {**views.endpoint(row), "secret": secret}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = endpoints.list_endpoints(principal(req).tenant_id, limit=limit, cursor=cursor)
        resp.media = views.page(page, views.endpoint)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        resp.media = views.endpoint(endpoints.get_endpoint(principal(req).tenant_id, endpoint_id))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_json(req, "endpoint_update", self.settings.max_body_bytes)
        row = endpoints.update_endpoint(principal(req).tenant_id, endpoint_id, body, self.policy)
        if "url" in body and row.status == ENDPOINT_UNVERIFIED:
            publish_quietly(self.enqueue, "verify_endpoint", row.id)
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

    def on_get_health(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        breaker = health.view(row, Policy.from_settings(self.settings))
        resp.media = views.endpoint_health(breaker, flow_view.view(row))

    def on_post_enable(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_optional_json(req, "endpoint_enable", self.settings.max_body_bytes)
        row, replayed = parking.enable(
            principal(req).tenant_id, endpoint_id, replay=bool(body.get("replay"))
        )
        resp.media = {"endpoint": views.endpoint(row), "replayed": replayed}

    def on_post_verify(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        _publish_or_503(self.enqueue, "verify_endpoint", row.id)
        resp.status = falcon.HTTP_202
        resp.media = views.endpoint(row)

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
