"""`/v1/events`: producers hand Hookline their events."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import structlog

from api import views
from api.errors import Problem
from api.metrics import EVENTS_INGESTED
from api.offload import Offload, receive_body
from api.resources import paging, principal
from api.validation import read_json, text_param
from engine.db.models import Event
from engine.errors import InvalidInputError
from engine.events import ingest as events
from engine.events.catalog_cache import CatalogCache, Snapshot
from engine.events.ingest import EventStore
from engine.settings import Settings

log = structlog.get_logger("hookline.api")

# Publishes `kind(ident)`; answers False (or raises) when the broker did not confirm.
Enqueue = Callable[[str, str], bool]
# Publishes `kind` for each id (in as few messages as the kind allows); False unless all
# were confirmed.
EnqueueMany = Callable[[str, list[str]], bool]


class Events:
    """The collection (`on_get`, `on_post`) and each item (`on_get_item`)."""

    # Reading events back shows what was delivered: the delivery log's scope.
    scopes = {"POST": "events:write", "GET": "deliveries:read"}
    ingest_methods = ("POST",)

    def __init__(
        self,
        settings: Settings,
        enqueue: Enqueue,
        enqueue_many: EnqueueMany | None,
        offload: Offload,
        store: EventStore,
        catalog: CatalogCache,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.enqueue = enqueue
        self.enqueue_many = enqueue_many or functools.partial(_one_by_one, enqueue)
        self.offload = offload

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """On the loop: a new event waits for its batch's commit, never for a thread."""
        limit = self.settings.max_body_bytes
        body = read_json(
            req,
            "event_create",
            limit,
            raw=await receive_body(req, limit) or b"",
            max_depth=self.settings.max_payload_depth,
        )
        key = _idempotency_key(req, body)
        tenant_id = principal(req).tenant_id
        version, first = await self._judge(tenant_id, body, key)
        if first is not None:
            EVENTS_INGESTED.labels("duplicate").inc()
            resp.media = views.event(first)
            return
        lease_s = self.settings.fan_out_lease_s
        created = True
        if key is None:
            event = await self.store.ingest_unkeyed(
                tenant_id,
                body["event_type"],
                body["payload"],
                fan_out_lease_s=lease_s,
                announce=self._announce,
                schema_version=version,
            )
        else:  # a lookup of the key first, and a conflict to settle: on a thread
            event, created = await self.offload.run(
                functools.partial(
                    self.store.ingest_event,
                    tenant_id,
                    body["event_type"],
                    body["payload"],
                    key,
                    fan_out_lease_s=lease_s,
                    announce=self._announce,
                    schema_version=version,
                )
            )
        EVENTS_INGESTED.labels("created" if created else "duplicate").inc()
        resp.status = falcon.HTTP_202 if created else falcon.HTTP_200
        resp.media = views.event(event)

    async def _judge(
        self, tenant_id: str, body: dict[str, Any], key: str | None
    ) -> tuple[int | None, Event | None]:
        """The catalog's verdict, before anything is stored: the schema version passed.

        Or, for a refused event whose idempotency key was stored, that first event: a
        repeat is answered it, though its type's schema or strict mode changed since.

        Raises:
            InvalidInputError: the catalog refuses the event (`SchemaViolationError` among them).
        """
        catalog = await catalog_snapshot(self.catalog, self.offload, tenant_id)
        try:
            return catalog.judge(body["event_type"], body["payload"]), None
        except InvalidInputError:
            if key is None:
                raise
            first = (await self.offload.run(events.keyed_events, tenant_id, [key])).get(key)
            if first is None:
                raise
            return None, first

    def _announce(self, event_ids: list[str]) -> None:
        """Publish `fan_out` for new events (those of concurrent requests together)."""
        fan_out_quietly(self.enqueue_many, event_ids)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = paging(req)
        page = events.list_events(
            principal(req).tenant_id,
            limit=limit,
            cursor=cursor,
            event_type=text_param(req, "event_type", max_length=128),
        )
        resp.media = views.page(page, views.event)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        event = events.get_event(principal(req).tenant_id, event_id)
        deliveries = events.event_deliveries(event)
        resp.media = {
            **views.event(event),
            "deliveries": [views.delivery_summary(d) for d in deliveries],
        }


async def catalog_snapshot(catalog: CatalogCache, offload: Offload, tenant_id: str) -> Snapshot:
    """The tenant's catalog: from memory on the loop, or read on a thread every few seconds."""
    snapshot = catalog.fresh(tenant_id)
    if snapshot is None:
        snapshot = await offload.run(catalog.load, tenant_id)
    return snapshot


def _one_by_one(enqueue: Enqueue, kind: str, idents: list[str]) -> bool:
    return all([enqueue(kind, ident) for ident in idents])


def fan_out_quietly(enqueue_many: EnqueueMany, event_ids: list[str]) -> None:
    """Publish `fan_out` for committed events; a failure is logged, never raised.

    The events' fan-out lease has the scheduler publish them if this fails.
    """
    _quietly(lambda: enqueue_many("fan_out", event_ids), kind="fan_out", idents=event_ids)


def publish_quietly(enqueue: Enqueue, kind: str, ident: str) -> None:
    """Publish after commit; a failure is logged, never raised: the scheduler catches up."""
    _quietly(lambda: enqueue(kind, ident), kind=kind, ident=ident)


def _quietly(publish: Callable[[], bool], **context: object) -> None:
    """Run `publish`; log a failure or a missing confirmation, never raise."""
    try:
        if publish():
            return
    except Exception as exc:  # noqa: BLE001 - a publish failure must not fail the request
        log.warning("publish_failed", **context, error=f"{type(exc).__name__}: {exc}")
        return
    log.warning("publish_unconfirmed", **context)


def _idempotency_key(req: falcon.Request, body: dict[str, object]) -> str | None:
    header = req.get_header("Idempotency-Key")
    in_body = body.get("idempotency_key")
    if header is not None and not 1 <= len(header) <= 255:
        raise Problem(
            400,
            "invalid-header",
            "Invalid header",
            "Idempotency-Key must be 1 to 255 characters.",
            field="Idempotency-Key",
        )
    if header is not None and in_body is not None and header != in_body:
        raise Problem(
            422,
            "validation",
            "Invalid request",
            "idempotency_key and the Idempotency-Key header differ.",
            field="idempotency_key",
        )
    return header if header is not None else (in_body if isinstance(in_body, str) else None)
