"""The Falcon (ASGI) app: `create_app` from injected collaborators, `get_app` for gunicorn."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import falcon.media

from api import errors
from api.audit import Audit
from api.metrics import Metrics, MetricsResource
from api.middleware import Auth, RateLimit, RequestContext
from api.offload import Offload, Offloaded
from api.resources.audit_log import AuditLog
from api.resources.deliveries import Deliveries
from api.resources.endpoint_secrets import EndpointSecrets
from api.resources.endpoints import Endpoints
from api.resources.event_batches import EventBatches
from api.resources.event_types import EventTypes
from api.resources.events import Enqueue, EnqueueMany, Events
from api.resources.health import Health, Readiness
from api.resources.keys import Keys
from api.resources.oauth import Jwks, OAuthServer
from api.resources.oauth_clients import OAuthClients
from api.resources.openapi import OpenApi
from api.resources.quarantine import Quarantine
from api.resources.replays import Replays
from api.resources.tenants import Tenants
from api.resources.transforms import Transforms
from api.server import ConcurrencyLimit
from api.server import Worker as ServerWorker
from api.tokens import TokenVerifier
from engine.events.catalog_cache import CatalogCache
from engine.events.ingest import EventStore
from engine.secretbox import SecretBox
from engine.secretbox import from_settings as secretbox_from_settings
from engine.settings import Settings
from engine.ssrf import AddressPolicy
from engine.tenancy.credentials import CredentialCache, CredentialGeneration
from engine.tenancy.limiter import Limiter


def address_policy(settings: Settings) -> AddressPolicy:
    """The SSRF policy the settings ask for."""
    return AddressPolicy(
        allow_private=settings.dangerous_allow_private_networks,
        allow_cidrs=settings.allowed_cidrs,
    )


def create_app(
    settings: Settings,
    *,
    database: Any,
    enqueue: Enqueue,
    enqueue_many: EnqueueMany | None = None,
    broker_check: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.time,
    secretbox: SecretBox | None = None,
    credentials: CredentialCache | None = None,
    events: EventStore | None = None,
    limiter: Limiter | None = None,
    catalogs: CatalogCache | None = None,
) -> falcon.asgi.App:
    """Build the ASGI app; the database is bound and `enqueue` publishes `fan_out`.

    Requests are served on the event loop; what blocks (the database, JWT
    keys) runs on `settings.api_threads` threads (`api.offload`). Events
    without an idempotency key never leave the loop: their rows are stored
    and announced in batches by `events` (`engine.events.ingest.EventStore`,
    built here when not given).

    `enqueue_many` publishes the ids of concurrent requests' events together,
    and a batch's (`POST /v1/events/batch`); by default each goes through `enqueue`.

    `secretbox` seals endpoint secrets; by default it is built from the settings.
    `credentials` remembers authenticated API keys for a moment (`engine.tenancy.credentials`);
    without it every request reads its key from the database. Revoking a key or
    changing a tenant empties it through its `generation`.

    `limiter` holds this process's leases on the shared rate-limit counters
    (`engine.tenancy.limiter`); one is built here when not given.

    `catalogs` holds this process's copy of the tenants' event-type catalogs, which
    ingest judges payloads against (`engine.events.catalog_cache`); built here when not given.
    """
    offload = Offload(database, settings.api_threads)
    rate_limit = RateLimit(limiter or Limiter(settings), clock, offload=offload)
    tokens = TokenVerifier(settings)  # shared with the token endpoint: one key cache
    middleware: list[Any] = [
        Metrics(),
        RequestContext(settings.access_log),
        Auth(settings, tokens, credentials=credentials, offload=offload),
        rate_limit,
        Audit(offload),  # every change, recorded after it committed (`api.audit`)
    ]
    app = falcon.asgi.App(media_type=falcon.MEDIA_JSON, middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    handler = falcon.media.JSONHandler(
        dumps=functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":")),
        loads=json.loads,
    )
    app.req_options.media_handlers.update({falcon.MEDIA_JSON: handler})
    app.resp_options.media_handlers.update(
        {falcon.MEDIA_JSON: handler, errors.PROBLEM_JSON: handler}
    )
    errors.install(app)

    def route(template: str, resource: Any, body_bytes: int | None = None, **options: str) -> None:
        bound = body_bytes or settings.max_body_bytes
        app.add_route(template, Offloaded(resource, offload, bound), **options)

    policy = address_policy(settings)
    route("/healthz", Health())
    route("/metrics", MetricsResource())
    route("/readyz", Readiness(database, broker_check))
    route("/openapi.json", OpenApi())
    changes = credentials.generation if credentials is not None else CredentialGeneration()
    catalogs = catalogs or CatalogCache(settings.event_types_cache_s)
    box = secretbox or secretbox_from_settings(settings)
    tenants = Tenants(settings, changes, catalogs, box)
    route("/v1/tenants", tenants)
    route("/v1/tenants/{tenant_id}", tenants, suffix="item")
    route("/v1/tenants/{tenant_id}/suspend", tenants, suffix="suspend")
    route("/v1/tenants/{tenant_id}/resume", tenants, suffix="resume")
    keys = Keys(settings, changes)
    route("/v1/keys", keys)
    route("/v1/keys/{key_id}", keys, suffix="item")
    clients = OAuthClients(settings)
    route("/v1/oauth-clients", clients)
    route("/v1/oauth-clients/{client_id}", clients, suffix="item")
    oauth_server = OAuthServer(settings, box, tokens)
    route("/oauth/token", oauth_server, suffix="token")
    route("/oauth/introspect", oauth_server, suffix="introspect")
    route("/oauth/revoke", oauth_server, suffix="revoke")
    route("/.well-known/jwks.json", Jwks())
    endpoints = Endpoints(settings, policy, box, enqueue)
    route("/v1/endpoints", endpoints)
    route("/v1/endpoints/{endpoint_id}", endpoints, suffix="item")
    route("/v1/endpoints/{endpoint_id}/verify", endpoints, suffix="verify")
    route("/v1/endpoints/{endpoint_id}/test", endpoints, suffix="test")
    secrets = EndpointSecrets(settings, box)
    route("/v1/endpoints/{endpoint_id}/secret", secrets)
    route("/v1/endpoints/{endpoint_id}/secret/rotate", secrets, suffix="rotate")
    route("/v1/endpoints/{endpoint_id}/recover", endpoints, suffix="recover")
    route("/v1/endpoints/{endpoint_id}/health", endpoints, suffix="health")
    route("/v1/endpoints/{endpoint_id}/enable", endpoints, suffix="enable")
    route("/v1/endpoints/{endpoint_id}/backfill", endpoints, suffix="backfill")
    route("/v1/endpoints/{endpoint_id}/pause", endpoints, suffix="pause")
    route("/v1/endpoints/{endpoint_id}/resume", endpoints, suffix="resume")
    route("/v1/transforms/preview", Transforms(settings), suffix="preview")
    store = events or EventStore()
    event_types = EventTypes(settings, catalogs)
    route("/v1/event-types", event_types)
    route("/v1/event-types/{name}", event_types, suffix="item")
    ingest = Events(settings, enqueue, enqueue_many, offload, store, catalogs)
    route("/v1/events", ingest)
    batches = EventBatches(
        settings, ingest.enqueue_many, offload, store, rate_limit.spend, catalogs
    )
    route("/v1/events/batch", batches, body_bytes=settings.max_batch_bytes)
    route("/v1/events/{event_id}", ingest, suffix="item")
    deliveries = Deliveries(settings, enqueue)
    route("/v1/deliveries", deliveries)
    route("/v1/deliveries/{delivery_id}", deliveries, suffix="item")
    route("/v1/deliveries/{delivery_id}/attempts", deliveries, suffix="attempts")
    route("/v1/deliveries/{delivery_id}/retry", deliveries, suffix="retry")
    route("/v1/quarantine", Quarantine())
    route("/v1/audit-log", AuditLog())
    replay_routes = Replays(settings)
    route("/v1/replays", replay_routes)
    route("/v1/replays/{replay_id}", replay_routes, suffix="item")
    route("/v1/replays/{replay_id}/cancel", replay_routes, suffix="cancel")
    return app


def get_app(
    generation: CredentialGeneration | None = None, limiter: Limiter | None = None
) -> ConcurrencyLimit:
    """The production app: settings from the environment, RabbitMQ as the broker.

    `generation` is the credential counter this process's cache reads; gunicorn's
    master shares one with every worker (`Worker`). `limiter` is the process's
    rate limiter, which `Worker` closes on the way out; built here when not
    given. Past `api.server.MAX_IN_FLIGHT` requests in flight, it answers 503 at once.
    """
    from actors import registry  # the one place the API is wired to the actors
    from actors.transactional import TransactionalPublisher
    from engine import logs
    from engine.db.connect import bind

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    database = bind(settings)
    publisher = registry.publisher(settings)
    transactional = TransactionalPublisher.sharing(publisher)
    app = create_app(
        settings,
        database=database,
        # Concurrent requests share one RabbitMQ commit: each still answers only once
        # its own message is committed (actors.transactional).
        enqueue=transactional.enqueue,
        enqueue_many=transactional.enqueue_many,
        broker_check=publisher.ping,
        credentials=CredentialCache(
            settings.credential_cache_ttl_s, generation=generation or CredentialGeneration()
        ),
        events=EventStore(),
        limiter=limiter or Limiter(settings),
    )
    return ConcurrencyLimit(app)


class Worker(ServerWorker):
    """gunicorn's worker (`ops/gunicorn.conf.py`): serves `get_app`, wired in this process.

    The credential counter comes from gunicorn's master, which made it before
    forking (its `on_starting` hook) so that every worker reads the same memory.
    The rate limiter's thread is stopped once the worker stops serving.
    """

    def load_wsgi(self) -> None:
        self.limiter = Limiter(Settings.from_env())
        self.wsgi = get_app(getattr(self.app, "credential_generation", None), self.limiter)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.limiter.close()
