"""Probes and the served OpenAPI document: no credentials, no database for liveness."""

from __future__ import annotations

import socket
from typing import Any

import peewee

import schemas
from engine.db.connect import open_database
from tests.api.conftest import MakeApi
from tests.api.support import Api, assert_problem
from tests.factories import make_settings


class DownDatabase:
    """A database whose every connection attempt fails, as when PostgreSQL is down."""

    def connect(self, reuse_if_open: bool = False) -> None:
        raise peewee.OperationalError("connection refused")

    def connection_context(self) -> Any:
        raise peewee.OperationalError("connection refused")

    def is_closed(self) -> bool:
        return True


def broker_down() -> None:
    raise ConnectionError("broker unreachable")


def test_healthz_answers_ok_without_credentials(api: Api) -> None:
    result = api.get("/healthz")

    assert result.status_code == 200
    assert result.json == {"status": "ok"}


def test_healthz_does_not_touch_the_database(make_api: MakeApi) -> None:
    result = make_api(database=DownDatabase()).get("/healthz")

    assert result.status_code == 200


def test_readyz_reports_each_dependency_ok(api: Api) -> None:
    result = api.get("/readyz")

    assert result.status_code == 200
    assert result.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_with_retry_after_when_the_broker_is_down(make_api: MakeApi) -> None:
    result = make_api(broker_check=broker_down).get("/readyz")

    assert result.status_code == 503
    assert result.headers["retry-after"].isdigit()
    assert result.json["status"] == "unavailable"
    assert result.json["checks"] == {"database": "ok", "broker": "error: ConnectionError"}


def test_readyz_is_503_when_the_database_is_down(make_api: MakeApi) -> None:
    result = make_api(database=DownDatabase()).get("/readyz")

    assert result.status_code == 503
    assert result.json["checks"]["database"] == "error: OperationalError"
    assert result.json["checks"]["broker"] == "ok"


def test_readyz_reports_an_unexpected_probe_error_instead_of_failing(make_api: MakeApi) -> None:
    def broken() -> None:
        raise RuntimeError("surprise")

    result = make_api(broker_check=broken).get("/readyz")

    assert result.status_code == 503
    assert result.json["checks"]["broker"] == "error: RuntimeError"
    assert "surprise" not in result.text


def test_a_tenant_route_is_503_with_retry_after_when_the_database_is_down(
    make_api: MakeApi,
) -> None:
    api = make_api(database=DownDatabase()).as_key("hk_any-key-at-all-0123456789")

    result = api.get("/v1/endpoints")

    problem = assert_problem(result, 503)
    assert problem["type"] == "urn:hookline:problem:unavailable"
    assert result.headers["retry-after"] == "2"
    assert "connection refused" not in result.text


def test_openapi_json_is_served_as_3_1(api: Api) -> None:
    result = api.get("/openapi.json")

    assert result.status_code == 200
    assert result.json["openapi"] == "3.1.0"
    assert result.json == schemas.openapi()


def test_unknown_routes_and_methods_answer_problem_json(tenant: Api) -> None:
    missing = tenant.call("GET", "/v1/nothing-here", check=False)
    wrong_method = tenant.call("PUT", "/v1/endpoints", doc={}, check=False)

    assert_problem(missing, 404)
    problem = assert_problem(wrong_method, 405)
    assert problem["type"] == "urn:hookline:problem:method-not-allowed"
    assert "POST" in wrong_method.headers["allow"]


def test_a_tenant_route_is_the_same_503_when_postgresql_refuses_connections(
    make_api: MakeApi,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once it is closed
    refused = open_database(
        make_settings(HOOKLINE_DATABASE_URL=f"postgresql://u@127.0.0.1:{port}/x")
    )
    api = make_api(database=refused).as_key("hk_any-key-at-all-0123456789")

    result = api.get("/v1/endpoints")
    ready = api.get("/readyz")

    problem = assert_problem(result, 503)
    assert problem["type"] == "urn:hookline:problem:unavailable"
    assert problem["title"] == "Service unavailable"
    assert result.headers["retry-after"] == "2"
    assert "refused" not in result.text
    assert ready.json["checks"]["database"] == "error: OperationalError"
