"""Payload filters end to end: real API, worker and scheduler on PostgreSQL and RabbitMQ, and
`hookline up` on SQLite, delivering to a receiver on 127.0.0.1 only what each filter lets
through."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import Api
from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

BIG_ORDERS = {
    "data.amount": {"$gte": 100},
    "data.currency": {"$in": ["usd", "eur"]},
    "$not": {"data.test": True},
}


def mixed_event(n: int) -> dict[str, Any]:
    """The n-th of 1,000 varied events: amounts as numbers or strings, some fields missing."""
    payload: dict[str, Any] = {"n": n, "amount": (n * 37) % 250}
    if n % 7 == 0:
        payload["amount"] = str(payload["amount"])  # a string never compares with a number
    if n % 11 != 0:
        payload["currency"] = ("usd", "eur", "gbp")[n % 3]
    if n % 5 == 0:
        payload["test"] = n % 10 == 0
    return {"event_type": ("order.paid", "order.refunded")[n % 2], "payload": payload}


def big_order(payload: dict[str, Any]) -> bool:
    """BIG_ORDERS written out by hand, to check the matcher against."""
    amount = payload["amount"]
    return (
        type(amount) is int
        and amount >= 100
        and payload.get("currency") in ("usd", "eur")
        and payload.get("test") is not True
    )


def test_a_filter_lets_through_only_the_matching_events_of_1000_mixed_ones(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant("filters")
    endpoints = {}
    for path, spec in [("/big", BIG_ORDERS), ("/rest", {"$not": BIG_ORDERS}), ("/all", None)]:
        status, body = api.call(
            "POST", "/v1/endpoints", {"url": receiver.url(path), "filter": spec}, key=key
        )
        assert status == 201, body
        assert body["filter"] == spec
        endpoints[path] = body
    events = [mixed_event(n) for n in range(1000)]
    expected_big = {e["payload"]["n"] for e in events if big_order(e["payload"])}
    assert 100 < len(expected_big) < 900  # a mix, not all or nothing

    for start in (0, 500):
        status, body = api.call(
            "POST", "/v1/events/batch", {"events": events[start : start + 500]}, key=key
        )
        assert status == 207, body
        assert [r["status"] for r in body["results"]] == [202] * 500

    receiver.wait_for("/all", 1000, timeout_s=90)
    receiver.wait_for("/big", len(expected_big), timeout_s=30)
    receiver.wait_for("/rest", 1000 - len(expected_big), timeout_s=30)
    time.sleep(1.0)  # anything sent to the wrong endpoint, or twice, would have arrived by now

    def numbers(path: str) -> list[int]:
        secret = endpoints[path]["secret"]
        got = receiver.received(path)
        return sorted(Webhook(secret).verify(r.body, r.headers)["data"]["n"] for r in got)

    assert numbers("/big") == sorted(expected_big)
    assert numbers("/rest") == sorted(set(range(1000)) - expected_big)
    assert numbers("/all") == list(range(1000))
    status, page = api.call(
        "GET", f"/v1/deliveries?endpoint_id={endpoints['/big']['id']}&limit=200", key=key
    )
    assert status == 200 and all(row["status"] == "succeeded" for row in page["data"])


def test_a_patched_filter_applies_to_the_next_events(
    stack: tuple[Api, Any], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant("refilter")
    status, endpoint = api.call(
        "POST", "/v1/endpoints", {"url": receiver.url("/p"), "filter": {"data.n": 1}}, key=key
    )
    assert status == 201, endpoint
    send = [{"event_type": "ping", "payload": {"n": n}} for n in (1, 2)]
    assert api.call("POST", "/v1/events/batch", {"events": send}, key=key)[0] == 207
    receiver.wait_for("/p", 1)

    status, body = api.call(
        "PATCH", f"/v1/endpoints/{endpoint['id']}", {"filter": {"data.n": 2}}, key=key
    )
    assert status == 200 and body["filter"] == {"data.n": 2}
    assert api.call("POST", "/v1/events/batch", {"events": send}, key=key)[0] == 207
    receiver.wait_for("/p", 2)
    status, body = api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", {"filter": None}, key=key)
    assert status == 200 and body["filter"] is None
    assert api.call("POST", "/v1/events/batch", {"events": send}, key=key)[0] == 207
    receiver.wait_for("/p", 4)
    time.sleep(0.5)

    got = [
        Webhook(endpoint["secret"]).verify(r.body, r.headers)["data"]["n"]
        for r in receiver.received("/p")
    ]
    assert got[:2] == [1, 2] and sorted(got[2:]) == [1, 2]


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_the_embedded_mode_applies_filters(tmp_path: Path) -> None:
    with hookline_up(tmp_path) as (api, env, cwd), Receiver() as receiver:
        key = cli(env, cwd, "tenants", "create", "acme")["api_key"]
        status, endpoint = api.call(
            "POST",
            "/v1/endpoints",
            {"url": receiver.url("/e"), "filter": {"data.country": {"$in": ["FR", "DE"]}}},
            key=key,
        )
        assert status == 201, endpoint
        status, refused = api.call(
            "PATCH", f"/v1/endpoints/{endpoint['id']}", {"filter": {"data.x": {"$re": 1}}}, key=key
        )
        assert status == 422 and refused["field"] == "filter.data.x.$re"
        for n, country in enumerate(["FR", "US", "DE", None, "fr"]):
            payload = {"n": n} if country is None else {"n": n, "country": country}
            status, _ = api.call(
                "POST", "/v1/events", {"event_type": "ping", "payload": payload}, key=key
            )
            assert status == 202
        receiver.wait_for("/e", 2)
        time.sleep(1.0)
        got = [
            Webhook(endpoint["secret"]).verify(r.body, r.headers)["data"]["n"]
            for r in receiver.received("/e")
        ]
    assert sorted(got) == [0, 2]
