"""An endpoint's `transform`: saved and checked, previewed, and applied by the fan-out."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from actors import fan_out
from actors.runtime import Runtime
from engine.db.models import Delivery, utcnow
from engine.deliveries.client import Outcome, Request
from engine.settings import Settings
from tests.api.support import Api, assert_problem, worker_runtime

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
PREVIEW = "/v1/transforms/preview"
ATTEMPTS = "/v1/deliveries/{delivery_id}/attempts"
SLACK = {"jmespath": "{text: join('', ['Invoice ', data.invoice, ' paid'])}"}
CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]


def test_an_endpoint_keeps_its_transform_and_patch_sets_and_clears_it(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint(transform=SLACK)
    assert created["transform"] == SLACK
    assert tenant.get(ENDPOINT, endpoint_id=created["id"]).json["transform"] == SLACK

    other = {"jmespath": "[data]"}
    changed = tenant.patch(ENDPOINT, {"transform": other}, endpoint_id=created["id"])
    assert changed.json["transform"] == other

    cleared = tenant.patch(ENDPOINT, {"transform": None}, endpoint_id=created["id"])
    assert cleared.json["transform"] is None
    assert tenant.get(ENDPOINT, endpoint_id=created["id"]).json["transform"] is None
    assert create_endpoint()["transform"] is None


@pytest.mark.parametrize(
    ("transform", "field", "says"),
    [
        ({"jmespath": "data.("}, "transform", "does not compile"),
        ({"jmespath": "nope(data)"}, "transform", "unknown function nope()"),
        ({"jmespath": "'" + "é" * 2100 + "'"}, "transform", "longer than 4096 bytes"),
        ({"jmespath": "x" * 4097}, "transform.jmespath", None),
        ({"jmespath": ""}, "transform.jmespath", None),
        ({"expression": "data"}, "transform.jmespath", "is required"),
        ("data", "transform", None),
    ],
)
def test_a_transform_that_cannot_be_saved_is_a_422_naming_it(
    tenant: Api, create_endpoint: CreateEndpoint, transform: Any, field: str, says: str | None
) -> None:
    for result in (
        tenant.post(ENDPOINTS, {"url": "https://receiver.example.com/h", "transform": transform}),
        tenant.patch(ENDPOINT, {"transform": transform}, endpoint_id=create_endpoint()["id"]),
    ):
        problem = assert_problem(result, 422, field)
        if says is not None:
            assert says in problem["detail"]


def test_preview_answers_the_body_a_receiver_would_get(tenant: Api) -> None:
    result = tenant.post(
        PREVIEW, {"transform": SLACK, "event": {"type": "invoice.paid", "data": {"invoice": "7"}}}
    )

    assert result.status_code == 200, result.text
    assert result.json == {"body": {"text": "Invoice 7 paid"}}


def test_preview_with_an_endpoint_sees_its_id_and_metadata(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint = create_endpoint(metadata={"channel": "#billing"})
    transform = {"jmespath": "{to: endpoint.metadata.channel, ep: endpoint.id, kind: type}"}

    result = tenant.post(
        PREVIEW,
        {
            "transform": transform,
            "event": {"type": "invoice.paid", "data": {}},
            "endpoint_id": endpoint["id"],
        },
    )

    assert result.json["body"] == {"to": "#billing", "ep": endpoint["id"], "kind": "invoice.paid"}
    alone = tenant.post(PREVIEW, {"transform": transform, "event": {"type": "a.b", "data": {}}})
    assert alone.json["body"] == {"to": None, "ep": None, "kind": "a.b"}


@pytest.mark.parametrize(
    ("expression", "says"),
    [("data.invoice", "result is a string"), ("data.missing", "result is null")],
)
def test_preview_of_a_result_that_cannot_be_sent_is_a_422_transform_error(
    tenant: Api, expression: str, says: str
) -> None:
    result = tenant.post(
        PREVIEW,
        {"transform": {"jmespath": expression}, "event": {"type": "a.b", "data": {"invoice": "7"}}},
    )

    problem = assert_problem(result, 422, "transform")
    assert problem["type"].endswith(":transform-error")
    assert says in problem["detail"]
    assert problem["errors"][0]["error_class"] == "transform_error"


def test_preview_of_a_body_over_the_limit_is_a_422(make_api: Any, tenant: Api) -> None:
    result = tenant.post(
        PREVIEW,
        {
            "transform": {"jmespath": "[data.s, data.s, data.s, data.s, data.s]"},
            "event": {"type": "a.b", "data": {"s": "x" * 60_000}},
        },
    )

    problem = assert_problem(result, 422, "transform")
    assert "larger than" in problem["detail"]


def test_preview_of_an_expression_that_does_not_compile_is_the_save_time_422(tenant: Api) -> None:
    result = tenant.post(
        PREVIEW, {"transform": {"jmespath": "data.("}, "event": {"type": "a.b", "data": {}}}
    )

    problem = assert_problem(result, 422, "transform")
    assert problem["type"].endswith(":validation")


def test_preview_of_another_tenants_endpoint_is_a_404(
    stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    result = stranger.post(
        PREVIEW,
        {
            "transform": SLACK,
            "event": {"type": "a.b", "data": {}},
            "endpoint_id": create_endpoint()["id"],
        },
    )

    assert_problem(result, 404)


def test_preview_needs_the_endpoints_read_scope(tenant: Api) -> None:
    body = {"transform": {"jmespath": "[type]"}, "event": {"type": "a.b", "data": {}}}
    writer = tenant.as_key(tenant.post("/v1/keys", {"scopes": ["events:write"]}).json["api_key"])
    reader = tenant.as_key(tenant.post("/v1/keys", {"scopes": ["endpoints:read"]}).json["api_key"])

    assert_problem(writer.post(PREVIEW, body), 403)
    assert reader.post(PREVIEW, body).json == {"body": ["a.b"]}


# The fan-out, with a real pipeline and a stand-in for the HTTP client -------------------


class Receiver:
    """A stand-in for `DeliveryClient.send`: keeps every request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        return Outcome(utcnow(), 1.0, status_code=200, response_body="ok")


@pytest.fixture
def worker(sqlite_settings: Settings, sqlite_db: Any) -> Iterator[tuple[Receiver, Runtime]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    receiver = Receiver()
    pipeline, rt = worker_runtime(sqlite_settings, sqlite_db, receiver, loop)
    yield receiver, rt
    pipeline.drain(5.0)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.mark.parametrize("early", [True, False])
def test_a_failing_transform_is_quarantined_at_once_and_the_other_endpoint_still_gets_the_event(
    worker: tuple[Receiver, Runtime],
    tenant: Api,
    create_endpoint: CreateEndpoint,
    publish: Publish,
    early: bool,
) -> None:
    receiver, rt = worker
    rt.settings = rt.settings.with_overrides(early_first_attempts=early)
    broken = create_endpoint(
        url="https://receiver.example.com/broken", transform={"jmespath": "data.order_id"}
    )
    shaped = create_endpoint(
        url="https://receiver.example.com/shaped",
        transform={"jmespath": "{order: data.order_id, kind: type}"},
    )
    plain = create_endpoint(url="https://receiver.example.com/plain")
    event = publish("order.paid", payload={"order_id": 42})

    fan_out.fan_out(rt, event["id"])
    rt.pipeline.recorder.flush()  # type: ignore[union-attr]

    sent = {request.url.rsplit("/", 1)[1]: request for request in receiver.requests}
    assert sorted(sent) == ["plain", "shaped"]
    assert sent["shaped"].body == b'{"order":42,"kind":"order.paid"}'
    assert sent["shaped"].headers["webhook-id"] == event["id"]
    Webhook(shaped["secret"]).verify(sent["shaped"].body, dict(sent["shaped"].headers))
    assert json.loads(sent["plain"].body)["data"] == {"order_id": 42}

    statuses = {row.endpoint_id: row for row in Delivery.select()}
    failed = statuses[broken["id"]]
    assert (failed.status, failed.quarantine_reason, failed.attempts) == (
        "quarantined",
        "transform_error",
        1,
    )
    assert "result is a number" in failed.last_error
    assert statuses[shaped["id"]].status == "succeeded"
    assert statuses[plain["id"]].status == "succeeded"

    [attempt] = tenant.get(ATTEMPTS, delivery_id=failed.id).json["data"]
    assert (attempt["error_class"], attempt["request_body"], attempt["transformed"]) == (
        "transform_error",
        None,
        False,
    )
    [attempt] = tenant.get(ATTEMPTS, delivery_id=statuses[shaped["id"]].id).json["data"]
    assert attempt["request_body"] == sent["shaped"].body.decode()
    assert attempt["transformed"] is True
    [attempt] = tenant.get(ATTEMPTS, delivery_id=statuses[plain["id"]].id).json["data"]
    assert attempt["request_body"] == sent["plain"].body.decode()
    assert attempt["transformed"] is False
