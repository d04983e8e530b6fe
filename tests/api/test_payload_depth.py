"""How deep a body may nest: a payload past `HOOKLINE_MAX_PAYLOAD_DEPTH` is refused at ingest.

A payload 974 levels deep used to be accepted, and every page of `GET /v1/events` that held
it then answered 500 with an empty body: the page around it nests deeper than Python's
recursion limit lets the answer be written.
"""

from __future__ import annotations

from typing import Any

from engine.db.models import Event
from engine.settings import Settings
from tests.api.conftest import MakeApi, new_tenant
from tests.api.support import Api, assert_problem
from tests.factories import ADMIN_TOKEN, endpoint_body, event_body, make_settings

EVENTS = "/v1/events"


def nested(levels: int) -> Any:
    """A value `levels` deep: `{"a": {"a": ... 1}}`; `nested(1)` is `{"a": 1}`."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_payload_974_levels_deep_is_refused_and_the_list_still_answers(tenant: Api) -> None:
    deep = b'{"a":' * 974 + b"1" + b"}" * 974  # written out: json.dumps here would recurse
    refused = tenant.call(
        "POST", EVENTS, raw=b'{"event_type":"order.paid","payload":' + deep + b"}"
    )

    problem = assert_problem(refused, 422, "payload")
    assert problem["type"] == "urn:hookline:problem:validation"
    assert "64 levels" in problem["detail"]
    assert not Event.select().exists(), "nothing was stored"
    assert tenant.get(EVENTS).status_code == 200


def test_sixty_four_levels_are_taken_and_listed_sixty_five_are_not(tenant: Api) -> None:
    deepest = tenant.post(EVENTS, event_body(payload=nested(64)))
    assert deepest.status_code == 202, deepest.text

    listed = tenant.get(EVENTS)
    assert listed.status_code == 200
    assert listed.json["data"][0]["payload"] == nested(64)
    assert_problem(tenant.post(EVENTS, event_body(payload=nested(65))), 422, "payload")
    assert_problem(tenant.post(EVENTS, event_body(payload={"list": [nested(64)]})), 422, "payload")


def test_brackets_inside_strings_are_text_not_depth(tenant: Api) -> None:
    payload = {"text": "{[" * 500, "shallow": [[{"b": []}]]}

    published = tenant.post(EVENTS, event_body(payload=payload))

    assert published.status_code == 202, published.text


def test_a_batch_too_deep_for_python_to_read_is_refused_naming_the_item(tenant: Api) -> None:
    deep = b'{"a":' * 974 + b"1" + b"}" * 974
    items = b'[{"event_type":"order.paid","payload":{}},{"event_type":"x","payload":' + deep
    result = tenant.call("POST", "/v1/events/batch", raw=b'{"events":' + items + b"}]}")

    problem = assert_problem(result, 422, "events.1.payload")
    assert "64 levels" in problem["detail"]


def test_a_batch_refuses_the_deep_item_alone(tenant: Api) -> None:
    deep = b'{"a":' * 200 + b"1" + b"}" * 200
    items = (
        b'[{"event_type":"order.paid","payload":'
        + deep
        + b'},{"event_type":"order.paid","payload":{}}]'
    )
    result = tenant.call("POST", "/v1/events/batch", raw=b'{"events":' + items + b"}")

    assert result.status_code == 207, result.text
    first, second = result.json["results"]
    assert (first["status"], first["error"]["field"]) == (422, "events.0.payload")
    assert second["status"] == 202


def test_every_other_body_is_held_to_sixty_four_levels(tenant: Api) -> None:
    result = tenant.post("/v1/endpoints", endpoint_body(metadata={"k": nested(64)}))

    assert_problem(result, 422, "metadata")


def test_the_depth_is_a_setting(sqlite_settings: Settings, make_api: MakeApi) -> None:
    settings = make_settings(
        HOOKLINE_DATA_DIR=sqlite_settings.data_dir, HOOKLINE_MAX_PAYLOAD_DEPTH=3
    )
    admin = make_api(settings).as_key(ADMIN_TOKEN)
    tenant = new_tenant(admin, "Shallow")

    assert tenant.post(EVENTS, event_body(payload=nested(3))).status_code == 202
    problem = assert_problem(tenant.post(EVENTS, event_body(payload=nested(4))), 422, "payload")
    assert "3 levels" in problem["detail"]
