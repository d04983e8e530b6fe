"""Schemathesis against the OpenAPI document, on the Falcon app in-process (WSGI).

Every documented operation is called with generated requests, as a tenant
holding every scope: no answer may be a 5xx, and each must be one the
document describes (status, content type, body). Bounded and derandomized,
so CI runs the same examples every time, within about a minute.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import schemas
from api.app import create_app
from engine.tenancy.tenants import create_tenant
from tests.api.support import Recorder
from tests.factories import make_settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25

schema = schemathesis.openapi.from_dict(copy.deepcopy(schemas.openapi()))


@pytest.fixture
def fuzz_app(tmp_path: Any, sqlite_db: Any) -> tuple[Any, dict[str, str]]:
    """The app on a fresh SQLite database, and the headers of a tenant with every scope."""
    settings_ = make_settings(
        HOOKLINE_DATA_DIR=str(tmp_path / "var"),
        HOOKLINE_RATE_LIMIT_INGEST_PER_S=0,
        HOOKLINE_RATE_LIMIT_MANAGEMENT_PER_S=0,
        HOOKLINE_RATE_LIMIT_TENANT_INGEST_PER_S=0,
        HOOKLINE_RATE_LIMIT_TENANT_MANAGEMENT_PER_S=0,
    )
    _, api_key = create_tenant("fuzz")
    app = create_app(settings_, database=sqlite_db, enqueue=Recorder())
    return app, {"Authorization": f"Bearer {api_key}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, fuzz_app: tuple[Any, dict[str, str]]
) -> None:
    app, headers = fuzz_app
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
