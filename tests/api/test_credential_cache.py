"""The API with a credential cache, as `hookline api` runs it: how soon key changes hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import ApiKey
from engine.settings import Settings
from engine.tenancy.credentials import CredentialCache, CredentialGeneration
from tests.api.support import Api, Recorder, assert_problem
from tests.factories import ADMIN_TOKEN, Clock

ENDPOINTS = "/v1/endpoints"
TTL_S = 1.0


@pytest.fixture
def process(sqlite_settings: Settings, sqlite_db: Any, clock: Clock) -> Callable[[], Api]:
    """Start one more API "process" of the host (an app with a cache of its own) on the test
    database; the host's processes share one counter of credential changes, as under gunicorn."""
    host = CredentialGeneration()

    def start() -> Api:
        cache = CredentialCache(TTL_S, generation=host, clock=clock)
        app = create_app(sqlite_settings, database=sqlite_db, enqueue=Recorder(), credentials=cache)
        return Api(TestClient(app))

    return start


@pytest.fixture
def owner(process: Callable[[], Api]) -> Api:
    created = process().as_key(ADMIN_TOKEN).post("/v1/tenants", {"name": "Acme"})
    assert created.status_code == 201, created.text
    return process().as_key(created.json["api_key"])


def issue(api: Api, *scopes: str) -> dict[str, Any]:
    result = api.post("/v1/keys", {"scopes": list(scopes)})
    assert result.status_code == 201, result.text
    return result.json  # type: ignore[no-any-return]


def test_a_key_is_read_from_the_database_once_per_ttl(owner: Api, clock: Clock) -> None:
    reader = owner.as_key(issue(owner, "endpoints:read")["api_key"])
    assert reader.get(ENDPOINTS).status_code == 200

    ApiKey.delete().execute()  # gone from the database, behind Hookline's back

    assert reader.get(ENDPOINTS).status_code == 200, "served from the cache within the TTL"
    clock.now += TTL_S
    assert_problem(reader.get(ENDPOINTS), 401)


def test_a_key_revoked_through_the_api_is_refused_at_once(owner: Api) -> None:
    created = issue(owner, "endpoints:read")
    reader = owner.as_key(created["api_key"])
    assert reader.get(ENDPOINTS).status_code == 200

    assert owner.delete("/v1/keys/{key_id}", key_id=created["id"]).status_code == 204

    assert_problem(reader.get(ENDPOINTS), 401)


def test_a_revocation_through_one_process_holds_at_once_in_another_of_the_host(
    owner: Api, process: Callable[[], Api]
) -> None:
    created = issue(owner, "endpoints:read")
    there = process().as_key(created["api_key"])
    assert there.get(ENDPOINTS).status_code == 200

    owner.delete("/v1/keys/{key_id}", key_id=created["id"])

    assert_problem(there.get(ENDPOINTS), 401)


def test_scopes_taken_away_behind_hookline_hold_within_the_ttl(owner: Api, clock: Clock) -> None:
    reader = owner.as_key(issue(owner, "endpoints:read")["api_key"])
    assert reader.get(ENDPOINTS).status_code == 200

    ApiKey.update(scopes=[]).execute()
    clock.now += TTL_S

    assert_problem(reader.get(ENDPOINTS), 403)


def test_a_tenants_new_rate_limit_holds_at_once(
    owner: Api, process: Callable[[], Api], sqlite_db: Any
) -> None:
    assert owner.get(ENDPOINTS).status_code == 200  # the owner's key is now cached
    tenant_id = ApiKey.get().tenant_id
    admin = process().as_key(ADMIN_TOKEN)

    changed = admin.patch(
        "/v1/tenants/{tenant_id}", {"rate_limits": {"management_per_s": 7}}, tenant_id=tenant_id
    )

    assert changed.status_code == 200, changed.text
    assert owner.get(ENDPOINTS).headers["ratelimit-limit"] == "7"


def test_a_new_key_works_at_once_and_a_wrong_one_is_never_remembered(owner: Api) -> None:
    stranger = owner.as_key("hk_" + "x" * 43)
    assert_problem(stranger.get(ENDPOINTS), 401)

    fresh = owner.as_key(issue(owner, "endpoints:read")["api_key"])

    assert fresh.get(ENDPOINTS).status_code == 200
    assert_problem(stranger.get(ENDPOINTS), 401)
