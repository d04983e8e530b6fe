"""`/v1/events/batch`: many events in one request, each judged apart, stored together."""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi
import jsonschema

import schemas
from api.errors import Problem, invalid_input, schema_problem
from api.json_depth import MAX_DEPTH
from api.metrics import EVENTS_INGESTED
from api.offload import Offload, receive_body
from api.resources import principal
from api.resources.events import EnqueueMany, catalog_snapshot, fan_out_quietly
from api.validation import compiled, item_problem, parse_json, problem_from
from engine.errors import InvalidInputError
from engine.events import ingest as events
from engine.events.catalog_cache import CatalogCache, Snapshot
from engine.events.ingest import Accepted, BatchItem, EventStore
from engine.events.payload_schema import SchemaViolationError
from engine.settings import Settings

SCHEMA = "event_batch"
ITEMS = "events"
# Spends `hits` more of the request's rate-limit budget; raises the 429 when it is spent
# (`api.middleware.RateLimit.spend`).
Spend = Callable[[falcon.Request, Any, int], Awaitable[None]]


class EventBatches:
    """The batch (`on_post`): a result per event; the valid ones committed and published once.

    Rate limits count one hit per event. The `RateLimit` middleware spends one
    per request before the body is read, as for any request, so that even a
    malformed batch costs one. Once the body is parsed and its events
    counted, `on_post` spends the other n - 1 through the same limiter
    (`spend`, handed in by `api.app`), before anything is stored: a batch past
    what remains of the budget is answered 429 whole, never admitted in part.
    """

    scopes = {"POST": "events:write"}
    ingest_methods = ("POST",)

    def __init__(
        self,
        settings: Settings,
        enqueue_many: EnqueueMany,
        offload: Offload,
        store: EventStore,
        spend: Spend,
        catalog: CatalogCache,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.offload = offload
        self.store = store
        self.spend = spend
        self.announce = functools.partial(fan_out_quietly, enqueue_many)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Parse, spend a hit per event, judge each item, store the valid ones; 207."""
        _refuse_idempotency_header(req)
        limit = self.settings.max_batch_bytes
        raw = await receive_body(req, limit) or b""
        items = read_batch(req, limit, raw, max_depth=self.settings.max_payload_depth)
        await self.spend(req, self, len(items) - 1)
        tenant_id = principal(req).tenant_id
        catalog = await catalog_snapshot(self.catalog, self.offload, tenant_id)
        results, valid, versions, refused = _judge(items, catalog, self.settings.max_payload_depth)
        await self._repeats(tenant_id, refused, results)
        if valid:
            answers = await self.offload.run(
                functools.partial(
                    self.store.ingest_batch,
                    tenant_id,
                    [item for _index, item in valid],
                    fan_out_lease_s=self.settings.fan_out_lease_s,
                    announce=self.announce,
                    schema_versions=versions,
                )
            )
            for (index, _item), answer in zip(valid, answers, strict=True):
                results[index] = _result(index, answer)
        resp.status = falcon.HTTP_207
        resp.media = {"results": results}

    async def _repeats(self, tenant_id: str, refused: dict[str, int], results: list[Any]) -> None:
        """Answer 200 and the first event for an item the catalog refused whose key was stored.

        A repeat of an accepted event is that event, though its type's schema or the
        tenant's strict mode changed since.
        """
        if not refused:
            return
        found = await self.offload.run(events.keyed_events, tenant_id, list(refused))
        for key, event in found.items():
            EVENTS_INGESTED.labels("duplicate").inc()
            results[refused[key]] = {"status": 200, "id": event.id}


def read_batch(
    req: falcon.Request, max_bytes: int, raw: bytes, *, max_depth: int = MAX_DEPTH
) -> list[Any]:
    """The batch's items, the body around them checked against its schema.

    The items are left to be judged one by one. The schema's `maxItems`
    bounds a batch; a longer one is refused as a body too large is.

    Raises:
        Problem: 415 wrong content type, 413 too large or too many items,
            400 malformed, 422 not a batch (naming the field).
    """
    # A batch too deep for Python to read names the item's field (`events.3.payload`).
    document = parse_json(req, max_bytes, raw, max_depth=max_depth, field_parts=3)
    envelope, most = _envelope()
    problem = problem_from(envelope.iter_errors(document))
    if problem is not None:
        raise problem
    items: list[Any] = document[ITEMS]
    if len(items) > most:
        raise Problem(
            413,
            "payload-too-large",
            "Payload too large",
            f"The batch holds {len(items)} events; the limit is {most}.",
            field=ITEMS,
        )
    return items


@functools.cache
def _envelope() -> tuple[jsonschema.Draft202012Validator, int]:
    """The batch schema's validator without its items and length; the most items it takes."""
    schema = copy.deepcopy(schemas.load(SCHEMA))
    listed = schema["properties"][ITEMS]
    del listed["items"]
    return compiled(schema), int(listed.pop("maxItems"))


def _judge(
    items: list[Any], catalog: Snapshot, max_depth: int
) -> tuple[list[Any], list[tuple[int, BatchItem]], list[int | None], dict[str, int]]:
    """The results of the invalid items (None for the others), the valid items by index, the
    schema version each valid item passed, and the index of each keyed item the catalog refused.
    """
    results: list[Any] = []
    valid: list[tuple[int, BatchItem]] = []
    versions: list[int | None] = []
    refused: dict[str, int] = {}
    for index, item in enumerate(items):
        at = f"{ITEMS}.{index}"
        problem = item_problem("event_create", item, at, max_depth=max_depth)
        if problem is None:
            try:
                version = catalog.judge(item["event_type"], item["payload"])
            except SchemaViolationError as exc:
                problem = schema_problem(exc, at)
            except InvalidInputError as exc:
                problem = invalid_input(exc, at)
            if problem is not None and item.get("idempotency_key") is not None:
                refused.setdefault(item["idempotency_key"], index)
        if problem is None:
            key = item.get("idempotency_key")
            valid.append((index, (item["event_type"], item["payload"], key)))
            versions.append(version)
        results.append(None if problem is None else _refused(problem))
    return results, valid, versions, refused


def _result(index: int, answer: Accepted | InvalidInputError) -> dict[str, Any]:
    if isinstance(answer, InvalidInputError):
        return _refused(invalid_input(answer, f"{ITEMS}.{index}"))
    EVENTS_INGESTED.labels("created" if answer.created else "duplicate").inc()
    return {"status": 202 if answer.created else 200, "id": answer.id}


def _refused(problem: Problem) -> dict[str, Any]:
    return {"status": 422, "error": problem.to_dict()}


def _refuse_idempotency_header(req: falcon.Request) -> None:
    """Keys are per event here: a header would read as the batch's own, which it is not."""
    if req.get_header("Idempotency-Key") is not None:
        raise Problem(
            400,
            "invalid-header",
            "Invalid header",
            "A batch takes no Idempotency-Key header; give each event its idempotency_key.",
            field="Idempotency-Key",
        )
