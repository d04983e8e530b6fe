"""What a review found, tried as an attacker would, on the real API processes (issue 19 §4)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.factories import ADMIN_TOKEN
from tests.integration.conftest import Api
from tests.integration.test_tenant_lifecycle import new_tenant

pytestmark = pytest.mark.integration


def post_raw(api: Api, path: str, raw: bytes, key: str) -> tuple[int, Any]:
    """POST bytes as JSON: `Api.call` would write the body with json.dumps, which recurses."""
    request = urllib.request.Request(api.base_url + path, data=raw, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_payload_974_levels_deep_is_422_and_the_event_list_keeps_answering(
    stack: tuple[Api, Any],
) -> None:
    api, _ = stack
    _tenant_id, key = new_tenant(api, "deep")
    deep = b'{"a":' * 974 + b"1" + b"}" * 974

    status, problem = post_raw(
        api, "/v1/events", b'{"event_type":"order.paid","payload":' + deep + b"}", key
    )

    assert (status, problem["field"]) == (422, "payload"), problem
    assert api.call("GET", "/v1/events", key=key) == (200, {"data": [], "next_cursor": None})


def test_thirty_wrong_keys_from_one_address_get_429_on_the_real_server(
    stack: tuple[Api, Any],
) -> None:
    api, _ = stack
    statuses = [api.call("GET", "/v1/endpoints", key=f"hk_wrong{i}")[0] for i in range(30)]
    assert statuses == [401] * 30

    status, problem = api.call("GET", "/v1/endpoints", key="hk_wrong-again")

    assert (status, problem["type"]) == (
        429,
        "urn:hookline:problem:too-many-failed-authentications",
    )
    retry_after = int(api.last_headers["retry-after"])
    assert retry_after >= 1
    # The budget refills (one every 2 s): the address is served again, as the next test needs.
    time.sleep(retry_after)
    assert api.call("GET", "/v1/tenants", key=ADMIN_TOKEN)[0] == 200
