"""`/v1/events/batch`: a result per event, the valid ones committed and published once."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import Event
from engine.settings import Settings
from tests.api.conftest import MakeApi, new_tenant
from tests.api.support import Api, BrokenBroker, Recorder, UnconfirmedBroker, assert_problem
from tests.factories import ADMIN_TOKEN, Clock, event_body, make_settings

BATCH = "/v1/events/batch"
EVENTS = "/v1/events"
EVENT = "/v1/events/{event_id}"


def batch(*events: Any) -> dict[str, Any]:
    return {"events": list(events)}


def results(answer: Any) -> list[tuple[int, str | None]]:
    """Each result's status and id, in order."""
    assert answer.status_code == 207, answer.text
    return [(r["status"], r.get("id")) for r in answer.json["results"]]


def stored_ids() -> set[str]:
    return {event.id for event in Event.select(Event.id)}


class Publisher:
    """A fake `enqueue_many`: records each call and what another connection saw of its ids."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.calls: list[tuple[str, list[str]]] = []
        self.committed: list[int] = []

    def __call__(self, kind: str, idents: list[str]) -> bool:
        self.calls.append((kind, list(idents)))
        with sqlite3.connect(self.path) as other:
            marks = ",".join("?" * len(idents))
            query = f"SELECT COUNT(*) FROM event WHERE id IN ({marks})"
            self.committed.append(other.execute(query, idents).fetchone()[0])
        return True


def test_a_valid_batch_is_207_with_a_202_per_event_and_every_event_stored(
    tenant: Api, recorder: Recorder
) -> None:
    sent = [event_body("order.paid", payload={"n": n}) for n in range(3)]

    answer = tenant.post(BATCH, batch(*sent))

    statuses = results(answer)
    assert [status for status, _ in statuses] == [202, 202, 202]
    ids = [event_id for _, event_id in statuses]
    assert stored_ids() == set(ids)
    for n, event_id in enumerate(ids):
        assert tenant.get(EVENT, event_id=event_id).json["payload"] == {"n": n}
    assert sorted(recorder.calls) == sorted(("fan_out", event_id) for event_id in ids)


def test_a_batchs_events_are_published_in_one_call_once_committed(
    sqlite_settings: Settings, sqlite_db: Any, admin: Api
) -> None:
    publisher = Publisher(sqlite_db.database)
    app = create_app(
        sqlite_settings, database=sqlite_db, enqueue=Recorder(), enqueue_many=publisher
    )
    key = admin.post("/v1/tenants", {"name": "Acme"}).json["api_key"]

    answer = Api(TestClient(app), key).post(BATCH, batch(*[event_body()] * 5))

    ids = [event_id for _, event_id in results(answer)]
    assert publisher.calls == [("fan_out", ids)]
    assert publisher.committed == [5]


def test_invalid_items_are_422_naming_their_field_and_never_block_the_valid_ones(
    tenant: Api, recorder: Recorder
) -> None:
    answer = tenant.post(
        BATCH,
        batch(
            event_body("order.paid"),
            event_body("not a type!"),
            {"event_type": "order.paid"},
            event_body("order.paid", payload={"note": "nul \u0000"}),
            7,
            event_body("order.paid\n"),  # passes the schema's `$`; the engine refuses it
            event_body("order.shipped"),
        ),
    )

    statuses = results(answer)
    assert [status for status, _ in statuses] == [202, 422, 422, 422, 422, 422, 202]
    fields = [r["error"]["field"] for r in answer.json["results"] if r["status"] == 422]
    assert fields == [
        "events.1.event_type",
        "events.2.payload",
        "events.3",
        "events.4",
        "events.5.event_type",
    ]
    for result in answer.json["results"][1:6]:
        assert result["error"]["type"] == "urn:hookline:problem:validation"
        assert result["error"]["status"] == 422
        assert result["error"]["detail"].startswith(result["error"]["field"])
        assert "id" not in result
    valid = {statuses[0][1], statuses[6][1]}
    assert stored_ids() == valid
    assert {ident for _, ident in recorder.calls} == valid


def test_a_batch_of_only_invalid_items_stores_and_publishes_nothing(
    tenant: Api, recorder: Recorder
) -> None:
    answer = tenant.post(BATCH, batch({"payload": {}}, event_body("bad type")))

    assert [status for status, _ in results(answer)] == [422, 422]
    assert stored_ids() == set()
    assert recorder.calls == []


def test_a_key_repeated_within_a_batch_answers_the_first_event_with_200(
    tenant: Api, recorder: Recorder
) -> None:
    answer = tenant.post(
        BATCH,
        batch(
            event_body(payload={"n": 1}, idempotency_key="k-1"),
            event_body(payload={"n": 2}),
            event_body(payload={"n": 3}, idempotency_key="k-1"),
        ),
    )

    (first_status, first), (_, other), (again_status, again) = results(answer)
    assert (first_status, again_status) == (202, 200)
    assert again == first
    assert stored_ids() == {first, other}
    assert tenant.get(EVENT, event_id=first).json["payload"] == {"n": 1}
    assert sorted(ident for _, ident in recorder.calls) == sorted([first, other])


def test_a_key_used_before_answers_its_event_with_200_across_batches_and_single_ingest(
    tenant: Api, recorder: Recorder
) -> None:
    single = tenant.post(EVENTS, event_body(idempotency_key="single"))
    first = tenant.post(BATCH, batch(event_body(idempotency_key="batched")))
    recorder.calls.clear()

    again = tenant.post(
        BATCH,
        batch(
            event_body(idempotency_key="batched"),
            event_body(idempotency_key="single"),
            event_body(idempotency_key="new"),
        ),
    )

    statuses = results(again)
    assert statuses[:2] == [(200, results(first)[0][1]), (200, single.json["id"])]
    assert statuses[2][0] == 202
    assert recorder.calls == [("fan_out", statuses[2][1])]
    repeat = tenant.post(EVENTS, event_body(idempotency_key="new"))
    assert (repeat.status_code, repeat.json["id"]) == (200, statuses[2][1])


def test_idempotency_keys_in_batches_are_per_tenant(tenant: Api, stranger: Api) -> None:
    mine = results(tenant.post(BATCH, batch(event_body(idempotency_key="shared"))))
    theirs = results(stranger.post(BATCH, batch(event_body(idempotency_key="shared"))))

    assert [status for status, _ in mine + theirs] == [202, 202]
    assert mine[0][1] != theirs[0][1]


def test_more_than_500_events_is_413_and_stores_nothing(tenant: Api, recorder: Recorder) -> None:
    answer = tenant.post(BATCH, batch(*[event_body()] * 501))

    problem = assert_problem(answer, 413, "events")
    assert "501" in problem["detail"] and "500" in problem["detail"]
    assert stored_ids() == set()
    assert recorder.calls == []


def test_500_events_are_one_batch(tenant: Api) -> None:
    answer = tenant.post(BATCH, batch(*[event_body()] * 500))

    assert [status for status, _ in results(answer)] == [202] * 500
    assert len(stored_ids()) == 500


@pytest.fixture
def bounded(sqlite_settings: Settings, make_api: MakeApi) -> Api:
    """The app with a 1 KiB body bound and a 4 KiB batch bound, called as a tenant."""
    settings = make_settings(
        HOOKLINE_DATA_DIR=sqlite_settings.data_dir,
        HOOKLINE_MAX_BODY_BYTES=1024,
        HOOKLINE_MAX_BATCH_BYTES=4096,
    )
    return new_tenant(make_api(settings).as_key(ADMIN_TOKEN), "Acme")


def test_a_batch_may_be_larger_than_a_single_body_up_to_its_own_bound(bounded: Api) -> None:
    body = batch(*[event_body(payload={"text": "x" * 200})] * 10)
    assert 2048 < len(json.dumps(body)) <= 4096

    answer = bounded.post(BATCH, body)

    assert [status for status, _ in results(answer)] == [202] * 10


def test_a_batch_over_its_byte_bound_is_413_and_stores_nothing(bounded: Api) -> None:
    body = batch(*[event_body(payload={"text": "x" * 200})] * 20)
    assert len(json.dumps(body)) > 4096

    assert_problem(bounded.post(BATCH, body), 413)
    assert stored_ids() == set()


def test_malformed_json_is_400(tenant: Api) -> None:
    answer = tenant.post(BATCH, raw=b'{"events": [')

    assert_problem(answer, 400, "(body)")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ([event_body()], "(body)"),
        ({"events": event_body()}, "events"),
        ({"events": []}, "events"),
        ({"events": [event_body()], "extra": 1}, "extra"),
    ],
    ids=["no events", "a bare list", "not a list", "empty", "an unknown field"],
)
def test_a_body_that_is_not_a_batch_is_422_naming_the_field(
    tenant: Api, body: Any, field: str
) -> None:
    assert_problem(tenant.post(BATCH, body), 422, field)
    assert stored_ids() == set()


def test_an_idempotency_key_header_is_400_the_keys_go_in_the_items(tenant: Api) -> None:
    answer = tenant.post(BATCH, batch(event_body()), headers={"Idempotency-Key": "k"})

    assert_problem(answer, 400, "Idempotency-Key")
    assert stored_ids() == set()


@pytest.mark.parametrize("broker", [BrokenBroker, UnconfirmedBroker], ids=["raises", "unconfirmed"])
def test_a_broker_that_fails_still_gets_202s_and_the_events_are_stored(
    make_api: MakeApi, admin: Api, broker: type[Recorder], logs: list[dict[str, Any]]
) -> None:
    enqueue = broker()
    key = admin.post("/v1/tenants", {"name": "Acme"}).json["api_key"]
    api = make_api(enqueue=enqueue).as_key(key)

    answer = api.post(BATCH, batch(event_body(), event_body()))

    ids = [event_id for status, event_id in results(answer) if status == 202]
    assert len(ids) == 2 and stored_ids() == set(ids)
    warned = [e for e in logs if e["event"] in ("publish_failed", "publish_unconfirmed")]
    assert [e["idents"] for e in warned] == [ids]


# --- rate limits: one hit per event --------------------------------------------------------


@pytest.fixture
def limited(sqlite_settings: Settings, sqlite_db: Any) -> Any:
    """A tenant of an app with an ingest limit per credential, and the app's clock."""

    def make(ingest_per_s: int) -> tuple[Api, Recorder]:
        settings = make_settings(
            HOOKLINE_DATA_DIR=sqlite_settings.data_dir,
            HOOKLINE_RATE_LIMIT_INGEST_PER_S=ingest_per_s,
        )
        recorder = Recorder()
        app = create_app(settings, database=sqlite_db, enqueue=recorder, clock=Clock())
        return new_tenant(Api(TestClient(app), ADMIN_TOKEN), "Acme"), recorder

    return make


def test_a_batch_past_the_ingest_limit_is_429_whole_and_stores_nothing(limited: Any) -> None:
    tenant, recorder = limited(10)

    answer = tenant.post(BATCH, batch(*[event_body()] * 11))

    problem = assert_problem(answer, 429)
    assert problem["type"] == "urn:hookline:problem:rate-limited"
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["ratelimit-limit"] == "10"
    assert answer.headers["ratelimit-remaining"] == "0"
    assert stored_ids() == set()
    assert recorder.calls == []


def test_a_batch_spends_one_hit_per_event(limited: Any) -> None:
    tenant, _ = limited(6)

    first = tenant.post(BATCH, batch(*[event_body()] * 5))
    sixth = tenant.post(EVENTS, event_body())
    seventh = tenant.post(EVENTS, event_body())

    assert first.status_code == 207
    assert first.headers["ratelimit-remaining"] == "1"
    assert (sixth.status_code, seventh.status_code) == (202, 429)
    assert len(stored_ids()) == 6


def test_a_batch_of_exactly_the_remaining_budget_is_admitted(limited: Any) -> None:
    tenant, _ = limited(6)
    tenant.post(EVENTS, event_body())

    answer = tenant.post(BATCH, batch(*[event_body()] * 5))

    assert [status for status, _ in results(answer)] == [202] * 5
    assert answer.headers["ratelimit-remaining"] == "0"
    assert tenant.post(BATCH, batch(event_body())).status_code == 429
