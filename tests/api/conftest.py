"""Fixtures for the API tests: the app on SQLite, a fake broker, and tenants to call as."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from falcon.testing import TestClient

from api.app import create_app
from engine.events.ingest import EventStore
from engine.settings import Settings
from engine.tenancy.limiter import Limiter
from tests.api.support import Api, Recorder
from tests.factories import ADMIN_TOKEN, endpoint_body, event_body

MakeApi = Callable[..., Api]


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every log event of the test, captured instead of rendered."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def event_store() -> EventStore:
    """One store of events for every app of the run, as one API process has: one thread."""
    return EventStore()


@pytest.fixture
def make_api(
    sqlite_settings: Settings, sqlite_db: Any, recorder: Recorder, event_store: EventStore
) -> Iterator[MakeApi]:
    """Build an app; by default on the test database, with the recording broker.

    Each app's rate limiter is closed after the test: its thread never outlives the database.
    """
    limiters: list[Limiter] = []

    def make(
        settings: Settings | None = None,
        *,
        enqueue: Callable[[str, str], bool] | None = None,
        broker_check: Callable[[], None] = lambda: None,
        database: Any = None,
    ) -> Api:
        limiters.append(Limiter(settings or sqlite_settings))
        app = create_app(
            settings or sqlite_settings,
            database=sqlite_db if database is None else database,
            enqueue=recorder if enqueue is None else enqueue,
            broker_check=broker_check,
            events=event_store,
            limiter=limiters[-1],
        )
        return Api(TestClient(app))

    yield make
    for limiter in limiters:
        limiter.close()


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    """The app, called without credentials."""
    return make_api()


@pytest.fixture
def admin(api: Api) -> Api:
    """The app, called with the admin token."""
    return api.as_key(ADMIN_TOKEN)


def new_tenant(admin: Api, name: str) -> Api:
    """Create a tenant through the admin API and call the app as it."""
    result = admin.post("/v1/tenants", {"name": name})
    assert result.status_code == 201, result.text
    return admin.as_key(result.json["api_key"])


@pytest.fixture
def tenant(admin: Api) -> Api:
    """The app, called as a fresh tenant."""
    return new_tenant(admin, "Acme")


@pytest.fixture
def stranger(admin: Api) -> Api:
    """The app, called as another tenant."""
    return new_tenant(admin, "Globex")


@pytest.fixture
def create_endpoint(tenant: Api) -> Callable[..., dict[str, Any]]:
    """Register an endpoint as `tenant` and return its body."""

    def create(**fields: Any) -> dict[str, Any]:
        result = tenant.post("/v1/endpoints", endpoint_body(**fields))
        assert result.status_code == 201, result.text
        return result.json  # type: ignore[no-any-return]

    return create


@pytest.fixture
def publish(tenant: Api) -> Callable[..., dict[str, Any]]:
    """Publish an event as `tenant` and return its body."""

    def send(event_type: str = "order.paid", **fields: Any) -> dict[str, Any]:
        result = tenant.post("/v1/events", event_body(event_type, **fields))
        assert result.status_code == 202, result.text
        return result.json  # type: ignore[no-any-return]

    return send
