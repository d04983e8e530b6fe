"""Failed authentications cost little and are limited per address (issue 19 §4.6)."""

from __future__ import annotations

from typing import Any

from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import ApiKey
from engine.settings import Settings
from engine.tenancy.credentials import CredentialCache
from engine.tenancy.tenants import PREFIX_CHARS, authenticate_key, hash_key
from tests.api.conftest import new_tenant
from tests.api.support import Api, Recorder, assert_problem
from tests.factories import ADMIN_TOKEN

ENDPOINTS = "/v1/endpoints"
GUESSER = "203.0.113.7"  # documentation addresses: never dialled, only named
NEIGHBOUR = "203.0.113.8"


def guess(api: Api, n: int, address: str = GUESSER) -> list[int]:
    wrong = api.as_key(None)
    return [
        wrong.get(ENDPOINTS, auth=f"Bearer hk_wrong{i:04d}", remote_addr=address).status_code
        for i in range(n)
    ]


def test_past_thirty_wrong_keys_an_address_gets_429_before_any_lookup(tenant: Api) -> None:
    assert guess(tenant, 30) == [401] * 30

    refused = tenant.get(ENDPOINTS, remote_addr=GUESSER)  # a right key, not remembered here

    problem = assert_problem(refused, 429, "Authorization")
    assert problem["type"] == "urn:hookline:problem:too-many-failed-authentications"
    assert refused.headers["Retry-After"] == "2"
    assert tenant.get(ENDPOINTS, remote_addr=NEIGHBOUR).status_code == 200, "its own budget"
    assert guess(tenant, 1, NEIGHBOUR) == [401]


def test_a_key_the_process_remembers_is_still_served_from_a_refused_address(
    sqlite_settings: Settings, sqlite_db: Any, admin: Api
) -> None:
    app = create_app(
        sqlite_settings,
        database=sqlite_db,
        enqueue=Recorder(),
        credentials=CredentialCache(60),
    )
    tenant = Api(TestClient(app), new_tenant(admin, "Nat").key)
    assert tenant.get(ENDPOINTS, remote_addr=GUESSER).status_code == 200  # remembered

    assert guess(tenant, 30) == [401] * 30

    assert tenant.get(ENDPOINTS, remote_addr=GUESSER).status_code == 200
    assert_problem(tenant.as_key(ADMIN_TOKEN).get("/v1/tenants", remote_addr=GUESSER), 429)


def test_wrong_admin_tokens_spend_the_budget_and_then_even_the_right_one_waits(
    api: Api,
) -> None:
    wrong = [
        api.get("/v1/tenants", auth=f"Bearer not-the-token-{i}", remote_addr=GUESSER).status_code
        for i in range(30)
    ]
    assert wrong == [401] * 30

    # A right guess must not be told apart from a wrong one once the budget is spent.
    refused = api.as_key(ADMIN_TOKEN).get("/v1/tenants", remote_addr=GUESSER)

    assert_problem(refused, 429)
    assert api.as_key(ADMIN_TOKEN).get("/v1/tenants", remote_addr=NEIGHBOUR).status_code == 200


def test_a_missing_credential_is_not_counted(api: Api) -> None:
    for _ in range(40):
        assert_problem(api.get(ENDPOINTS, remote_addr=GUESSER), 401)


def test_a_prefix_no_live_key_has_is_remembered_and_forgotten_on_a_change(tenant: Api) -> None:
    cache = CredentialCache(60)
    wrong = "hk_" + "Z" * 43
    assert authenticate_key(wrong, cache) is None
    assert cache.unknown(wrong[:PREFIX_CHARS])

    # Written behind the API's back: the remembered prefix answers without a read.
    live = ApiKey.get(ApiKey.revoked_at.is_null())
    ApiKey.update(key_hash=hash_key(wrong), prefix=wrong[:PREFIX_CHARS]).where(
        ApiKey.id == live.id
    ).execute()
    assert authenticate_key(wrong, cache) is None
    cache.generation.changed()  # what issuing a key through Hookline does

    assert authenticate_key(wrong, cache) is not None


def test_a_wrong_key_sharing_a_live_keys_prefix_is_never_remembered(tenant: Api) -> None:
    assert tenant.key is not None
    cache = CredentialCache(60)
    typo = tenant.key[:-1] + ("A" if tenant.key[-1] != "A" else "B")

    assert authenticate_key(typo, cache) is None
    assert not cache.unknown(typo[:PREFIX_CHARS]), "the right key must keep working"
    assert authenticate_key(tenant.key, cache) is not None


def test_a_key_issued_through_the_api_works_at_once_where_its_prefix_was_unknown(
    sqlite_settings: Settings, sqlite_db: Any, admin: Api
) -> None:
    cache = CredentialCache(60)
    app = create_app(sqlite_settings, database=sqlite_db, enqueue=Recorder(), credentials=cache)
    tenant = Api(TestClient(app), new_tenant(admin, "Fresh").key)
    issued = tenant.post("/v1/keys", {"scopes": ["endpoints:read"]}).json["api_key"]
    cache.put_unknown(issued[:PREFIX_CHARS], generation=cache.generation.read())
    assert cache.unknown(issued[:PREFIX_CHARS])

    tenant.post("/v1/keys", {"scopes": ["endpoints:read"]})  # another issue empties it

    assert tenant.as_key(issued).get(ENDPOINTS).status_code == 200
