"""Rate limits per credential and per tenant, ingest apart from management, 429 when spent."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from falcon.testing import TestClient

from api.app import create_app
from engine.db.models import ApiKey, RateLimitWindow
from engine.tenancy.limiter import Limiter
from engine.tenancy.tenants import hash_key
from tests.api.conftest import new_tenant
from tests.api.support import Api, Recorder, assert_problem
from tests.factories import ADMIN_TOKEN, event_body, eventually, make_settings

ENDPOINTS = "/v1/endpoints"
TENANT = "/v1/tenants/{tenant_id}"
HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


class Clock:
    """A clock the test moves; starts a quarter into a window."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.25

    def __call__(self) -> float:
        return self.now

    def next_window(self) -> None:
        self.now += 1.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(sqlite_settings: Any, sqlite_db: Any, clock: Clock) -> Iterator[Callable[..., Api]]:
    """The app with some limits set (names without the HOOKLINE_RATE_LIMIT_ prefix)."""
    limiters: list[Limiter] = []

    def make(**limits: int) -> Api:
        env = {f"HOOKLINE_RATE_LIMIT_{name.upper()}": value for name, value in limits.items()}
        settings = make_settings(HOOKLINE_DATA_DIR=sqlite_settings.data_dir, **env)
        limiters.append(Limiter(settings))
        app = create_app(
            settings, database=sqlite_db, enqueue=Recorder(), clock=clock, limiter=limiters[-1]
        )
        return Api(TestClient(app), ADMIN_TOKEN)

    yield make
    for limiter in limiters:
        limiter.close()  # its thread never outlives the test's database


def tenant_id_of(api: Api) -> str:
    """The tenant a key belongs to, read without spending a request."""
    assert api.key is not None
    return str(ApiKey.get(ApiKey.key_hash == hash_key(api.key)).tenant_id)


def spend(api: Api, count: int, template: str = ENDPOINTS) -> list[int]:
    return [api.get(template).status_code for _ in range(count)]


def test_a_credential_over_its_limit_gets_429_with_retry_after(limited: Any) -> None:
    tenant = new_tenant(limited(management_per_s=3), "Acme")
    tenant.get("/v1/keys")  # the first of three

    answers = [tenant.get(ENDPOINTS) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    problem = assert_problem(answers[2], 429)
    assert problem["type"] == "urn:hookline:problem:rate-limited"
    assert answers[2].headers["retry-after"] == "1"
    assert [answers[2].headers[name] for name in HEADERS] == ["3", "0", "1"]


def test_the_budget_is_whole_again_in_the_next_window(limited: Any, clock: Clock) -> None:
    tenant = new_tenant(limited(management_per_s=2), "Acme")
    assert spend(tenant, 3) == [200, 200, 429]

    clock.next_window()

    assert spend(tenant, 3) == [200, 200, 429]


def test_ingest_and_management_have_separate_budgets(limited: Any) -> None:
    tenant = new_tenant(limited(management_per_s=2, ingest_per_s=3), "Acme")
    assert spend(tenant, 3) == [200, 200, 429]

    published = [tenant.post("/v1/events", event_body()).status_code for _ in range(4)]

    assert published == [202, 202, 202, 429]
    assert tenant.get(ENDPOINTS).status_code == 429


def test_every_counted_answer_carries_the_headers_even_an_error(limited: Any) -> None:
    tenant = new_tenant(limited(management_per_s=5), "Acme")

    missing = tenant.get(ENDPOINTS + "/{endpoint_id}", endpoint_id="ep_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    invalid = tenant.post(ENDPOINTS, {"url": 42})

    for answer, remaining in ((missing, "4"), (invalid, "3")):
        assert answer.status_code in (404, 422)
        assert answer.headers["ratelimit-limit"] == "5"
        assert answer.headers["ratelimit-remaining"] == remaining
        assert answer.headers["ratelimit-reset"] == "1"


def test_the_tenant_limit_holds_across_its_keys(limited: Any) -> None:
    tenant = new_tenant(limited(management_per_s=3, tenant_management_per_s=4), "Acme")
    key = tenant.post("/v1/keys", {"scopes": ["endpoints:read"]}).json["api_key"]  # 1
    second = tenant.as_key(key)

    assert spend(tenant, 3) == [200, 200, 429]  # 2, 3, then the key's own limit (4)
    assert spend(second, 2) == [429, 429]  # the tenant's 4 are spent
    problem = assert_problem(second.get(ENDPOINTS), 429)
    assert "4 requests per second" in problem["detail"]


def test_another_tenant_is_unaffected(limited: Any) -> None:
    api = limited(management_per_s=2, tenant_management_per_s=2)
    first, other = new_tenant(api, "Acme"), new_tenant(api, "Globex")

    assert spend(first, 3) == [200, 200, 429]
    assert spend(other, 2) == [200, 200]


def test_the_tightest_budget_is_the_one_reported(limited: Any) -> None:
    tenant = new_tenant(limited(management_per_s=10, tenant_management_per_s=3), "Acme")

    answer = tenant.get(ENDPOINTS)

    assert (answer.headers["ratelimit-limit"], answer.headers["ratelimit-remaining"]) == ("3", "2")


def test_an_admin_override_applies_to_the_tenant_at_once(limited: Any, clock: Clock) -> None:
    admin = limited(management_per_s=100)
    tenant = new_tenant(admin, "Acme")
    tenant_id = tenant_id_of(tenant)

    changed = admin.patch(TENANT, {"rate_limits": {"management_per_s": 2}}, tenant_id=tenant_id)
    clock.next_window()

    assert changed.status_code == 200
    assert changed.json["rate_limits"] == {"management_per_s": 2}
    assert spend(tenant, 3) == [200, 200, 429]
    assert (
        admin.patch(TENANT, {"rate_limits": None}, tenant_id=tenant_id).json["rate_limits"] is None
    )
    assert spend(tenant, 1) == [200]


def test_an_override_of_zero_lifts_a_limit_for_one_tenant(limited: Any) -> None:
    admin = limited(management_per_s=2, tenant_management_per_s=2)
    tenant, other = new_tenant(admin, "Acme"), new_tenant(admin, "Globex")
    overrides = {"management_per_s": 0, "tenant_management_per_s": 0}
    admin.patch(TENANT, {"rate_limits": overrides}, tenant_id=tenant_id_of(tenant))

    assert 429 not in spend(tenant, 5)
    assert "ratelimit-limit" not in tenant.get(ENDPOINTS).headers
    assert spend(other, 3) == [200, 200, 429]


def test_no_limit_configured_means_no_counting(limited: Any) -> None:
    api = limited(management_per_s=0, tenant_management_per_s=0)
    tenant = new_tenant(api, "Acme")

    assert spend(tenant, 5) == [200] * 5
    assert "ratelimit-limit" not in tenant.get(ENDPOINTS).headers
    assert RateLimitWindow.select().count() == 0


def test_finished_windows_are_swept(limited: Any, clock: Clock) -> None:
    tenant = new_tenant(limited(), "Acme")
    for _ in range(5):
        spend(tenant, 2)
        clock.next_window()
    spend(tenant, 1)

    def swept() -> set[int] | None:  # by the limiter's thread, soon after the request
        windows = {row.window_start for row in RateLimitWindow.select()}
        return windows if len(windows) <= 2 else None

    assert max(eventually(swept)) == int(clock.now)


@pytest.fixture
def sent(sqlite_db: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement sent to the database from now on."""
    statements: list[str] = []
    execute_sql = sqlite_db.execute_sql

    def spy(sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(sqlite_db, "execute_sql", spy)
    return statements


def test_ingest_within_the_default_limits_leases_in_chunks_not_a_statement_a_request(
    limited: Any, sent: list[str]
) -> None:
    tenant = new_tenant(limited(), "Acme")

    published = [tenant.post("/v1/events", event_body()).status_code for _ in range(200)]

    assert published == [202] * 200
    # 20,000/s for the key and the tenant: both lease 20 hits (a thousandth) in one statement,
    # and are topped up together, in the background, from under half a chunk (11 hits or more).
    assert sum("INSERT INTO rate_limit" in sql for sql in sent) <= 1 + (200 - 20) // 10


def test_a_spent_window_refuses_without_a_statement(limited: Any, sent: list[str]) -> None:
    tenant = new_tenant(limited(management_per_s=2, tenant_management_per_s=0), "Acme")
    assert spend(tenant, 3) == [200, 200, 429]
    sent.clear()

    assert spend(tenant, 20) == [429] * 20
    assert not [sql for sql in sent if re.search(r"\brate_limit\b", sql)]  # not rate_limits


def test_a_tenant_key_cannot_set_rate_limits(limited: Any) -> None:
    tenant = new_tenant(limited(), "Acme")

    result = tenant.patch(TENANT, {"rate_limits": None}, tenant_id=tenant_id_of(tenant))

    assert_problem(result, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "(body)"),
        ({"rate_limits": {"management_per_s": -1}}, "rate_limits.management_per_s"),
        ({"rate_limits": {"burst": 5}}, "rate_limits.burst"),
        ({"rate_limits": {"ingest_per_s": 1.5}}, "rate_limits.ingest_per_s"),
        ({"rate_limits": "none"}, "rate_limits"),
        ({"name": ""}, "name"),
        ({"id": "ten_x"}, "id"),
    ],
    ids=["empty", "negative", "unknown", "fraction", "string", "blank-name", "id"],
)
def test_a_bad_tenant_update_is_422_naming_the_field(
    limited: Any, body: dict[str, Any], field: str
) -> None:
    admin = limited()
    tenant_id = tenant_id_of(new_tenant(admin, "Acme"))

    result = admin.patch(TENANT, body, tenant_id=tenant_id)

    assert_problem(result, 422, field)


def test_updating_an_unknown_tenant_is_404(limited: Any) -> None:
    result = limited().patch(TENANT, {"name": "x"}, tenant_id="ten_01ARZ3NDEKTSV4RRFFQ69G5FAV")

    assert_problem(result, 404)


def test_a_tenant_can_be_renamed(limited: Any) -> None:
    admin = limited()
    tenant_id = tenant_id_of(new_tenant(admin, "Acme"))

    result = admin.patch(TENANT, {"name": "Acme Corp"}, tenant_id=tenant_id)

    assert (result.json["id"], result.json["name"]) == (tenant_id, "Acme Corp")
    assert result.json["rate_limits"] is None
