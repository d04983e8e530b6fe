"""The SSRF guard at registration: loopback however it is spelled, when not allowed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.settings import Settings
from tests.api.support import Api, assert_problem
from tests.factories import endpoint_body

ENDPOINTS = "/v1/endpoints"
ENDPOINT = "/v1/endpoints/{endpoint_id}"


@pytest.fixture
def strict(make_api: Callable[..., Api], sqlite_settings: Settings, tenant: Api) -> Api:
    """The app with private networks refused, called as `tenant`."""
    settings = sqlite_settings.with_overrides(dangerous_allow_private_networks=False)
    return make_api(settings).as_key(tenant.key)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "https://0x7f000001/",
        "http://127\u30020\u30020\u30021/",  # IDNA dots: the client connects to 127.0.0.1
        "http://\uff11\uff12\uff17.0.0.1/",  # fullwidth digits
    ],
)
def test_a_loopback_spelling_is_refused_naming_url(strict: Api, url: str) -> None:
    for verify in (False, True):
        result = strict.post(ENDPOINTS, endpoint_body(url=url, verify=verify))

        problem = assert_problem(result, 422, "url")
        assert "loopback" in problem["detail"] or "127.0.0.1" in problem["detail"]
        # what to change, for the developer whose local receiver it is
        assert "HOOKLINE_ALLOWED_CIDRS" in problem["detail"], problem["detail"]
        assert "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS" in problem["detail"]
    assert strict.get(ENDPOINTS).json["data"] == []


def test_a_malformed_url_is_refused_without_the_settings_hint(strict: Api) -> None:
    problem = assert_problem(
        strict.post(ENDPOINTS, endpoint_body(url="ftp://x.example/")), 422, "url"
    )

    assert "HOOKLINE_" not in problem["detail"]  # no setting makes this URL deliverable


def test_moving_an_endpoint_to_loopback_is_refused(strict: Api) -> None:
    created = strict.post(ENDPOINTS, endpoint_body()).json

    result = strict.patch(ENDPOINT, {"url": "http://2130706433/"}, endpoint_id=created["id"])

    assert_problem(result, 422, "url")


def test_a_name_is_judged_when_the_worker_connects_not_at_registration(strict: Api) -> None:
    result = strict.post(ENDPOINTS, endpoint_body(url="http://localhost:9/hook"))

    assert result.status_code == 201


def test_an_allowed_cidr_admits_loopback(
    make_api: Callable[..., Api], sqlite_settings: Settings, tenant: Api
) -> None:
    settings = sqlite_settings.with_overrides(
        dangerous_allow_private_networks=False,
        allowed_cidrs=Settings.from_env({"HOOKLINE_ALLOWED_CIDRS": "127.0.0.0/8"}).allowed_cidrs,
    )
    api = make_api(settings).as_key(tenant.key)

    assert api.post(ENDPOINTS, endpoint_body(url="http://127.0.0.1:9/")).status_code == 201
    assert_problem(api.post(ENDPOINTS, endpoint_body(url="http://[::1]:9/")), 422, "url")
