"""`GET /v1/endpoints/{id}/health`, `POST …/enable`, breaker overrides and tenant alert channels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.breakers import store as health
from engine.breakers.state import Policy
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.tenancy.tenants import authenticate_key
from tests.api.support import Api, assert_problem, attempt, outcome

HEALTH = "/v1/endpoints/{endpoint_id}/health"
ENABLE = "/v1/endpoints/{endpoint_id}/enable"
ENDPOINT = "/v1/endpoints/{endpoint_id}"
DELIVERY = "/v1/deliveries/{delivery_id}"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CreateEndpoint = Callable[..., dict[str, Any]]
Publish = Callable[..., dict[str, Any]]


def failures(endpoint_id: str, count: int) -> None:
    """The supervisor folding `count` failed attempts of the endpoint."""
    seen = [
        health.Observation(endpoint_id, False, outcome(500).started_at, 500, f"dlv_{n}")
        for n in range(count)
    ]
    health.fold(seen, policy=Policy())


def test_a_new_endpoint_is_healthy_with_a_closed_breaker(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    body = tenant.get(HEALTH, endpoint_id=endpoint_id).json

    assert body == {
        "endpoint_id": endpoint_id,
        "status": "active",
        "state": "closed",
        "failure_rate": 0.0,
        "window_attempts": 0,
        "consecutive_failures": 0,
        "last_success_at": None,
        "last_failure_at": None,
        "opened_at": None,
        "next_probe_at": None,
        "disables_at": None,
        "parked": 0,
        "flow": {
            "rate_limit_per_s": None,
            "max_in_flight": None,
            "ordering": "unordered",
            "concurrency_limit": None,
            "concurrency_reason": None,
            "concurrency_changed_at": None,
            "paused_until": None,
            "pause_reason": None,
            "in_flight": 0,
            "throttled": 0,
        },
    }


def test_the_health_of_a_failing_endpoint_shows_the_open_breaker_and_parked_deliveries(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    [delivery_id] = fanout.fan_out(publish()["id"])
    failures(endpoint_id, 12)
    assert deliveries.claim(delivery_id, lease_s=30) is None

    body = tenant.get(HEALTH, endpoint_id=endpoint_id).json

    assert (body["state"], body["failure_rate"], body["window_attempts"]) == ("open", 1.0, 12)
    assert body["consecutive_failures"] == 12 and body["parked"] == 1
    assert body["opened_at"] and body["next_probe_at"] and body["disables_at"]
    assert body["last_failure_at"] and body["last_success_at"] is None
    delivery = tenant.get(DELIVERY, delivery_id=delivery_id).json
    assert (delivery["status"], delivery["attempts"]) == ("parked", 0)
    listed = tenant.get("/v1/deliveries", params={"status": "parked"}).json["data"]
    assert [d["id"] for d in listed] == [delivery_id]


def test_enable_with_replay_reactivates_a_disabled_endpoint_and_requeues_its_deliveries(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    gone, waiting = (fanout.fan_out(publish()["id"])[0] for _ in range(2))
    attempt(gone, outcome(410, error_class="http_status"))
    deliveries.claim(waiting, lease_s=30)
    assert tenant.get(ENDPOINT, endpoint_id=endpoint_id).json["status"] == "disabled"

    result = tenant.post(ENABLE, {"replay": True}, endpoint_id=endpoint_id)

    assert result.status_code == 200
    assert result.json["replayed"] == 2
    assert result.json["endpoint"]["status"] == "active"
    assert result.json["endpoint"]["disabled_reason"] is None
    for delivery_id in (gone, waiting):
        assert tenant.get(DELIVERY, delivery_id=delivery_id).json["status"] == "parked"
    assert tenant.get(HEALTH, endpoint_id=endpoint_id).json["state"] == "closed"


def test_enable_without_a_body_cancels_what_was_parked(
    tenant: Api, create_endpoint: CreateEndpoint, publish: Publish
) -> None:
    endpoint_id = create_endpoint()["id"]
    [delivery_id] = fanout.fan_out(publish()["id"])
    failures(endpoint_id, 20)
    deliveries.claim(delivery_id, lease_s=30)

    result = tenant.post(ENABLE, endpoint_id=endpoint_id, content_type=None)

    assert result.status_code == 200 and result.json["replayed"] == 0
    assert tenant.get(DELIVERY, delivery_id=delivery_id).json["status"] == "cancelled"
    assert tenant.get(HEALTH, endpoint_id=endpoint_id).json["parked"] == 0


def test_enabling_an_unverified_endpoint_is_409(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint(verify=True)["id"]

    assert_problem(tenant.post(ENABLE, {}, endpoint_id=endpoint_id), 409)


def test_another_tenants_endpoint_has_no_health_and_cannot_be_enabled(
    stranger: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(stranger.get(HEALTH, endpoint_id=endpoint_id), 404)
    assert_problem(stranger.post(ENABLE, {"replay": True}, endpoint_id=endpoint_id), 404)


def test_enable_refuses_unknown_fields(tenant: Api, create_endpoint: CreateEndpoint) -> None:
    endpoint_id = create_endpoint()["id"]

    assert_problem(tenant.post(ENABLE, {"replay": "yes"}, endpoint_id=endpoint_id), 422, "replay")


def test_breaker_overrides_are_set_on_create_and_patch(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    created = create_endpoint(breaker={"failure_pct": 50, "disable_after_s": 3600})
    assert created["breaker"] == {"failure_pct": 50, "disable_after_s": 3600}

    patched = tenant.patch(ENDPOINT, {"breaker": None}, endpoint_id=created["id"]).json
    assert patched["breaker"] is None
    problem = assert_problem(
        tenant.patch(ENDPOINT, {"breaker": {"window_s": 1}}, endpoint_id=created["id"]), 422
    )
    assert problem["field"] == "breaker.window_s"


def test_an_endpoints_overrides_apply_to_its_breaker(
    tenant: Api, create_endpoint: CreateEndpoint
) -> None:
    endpoint_id = create_endpoint(breaker={"consecutive_failures": 3})["id"]

    failures(endpoint_id, 3)

    assert tenant.get(HEALTH, endpoint_id=endpoint_id).json["state"] == "open"


def test_the_admin_sets_a_tenants_alert_channels(admin: Api, tenant: Api) -> None:
    tenant_id = _tenant_id(tenant)
    channels = {
        "slack_webhook_url": "https://hooks.slack.example/services/T/B/x",
        "pagerduty_routing_key": "R0UTING",
        "email_to": ["ops@example.com"],
        "webhook_url": "https://ops.example.com/alerts",
        "webhook_secret": SECRET,
    }

    result = admin.patch(
        "/v1/tenants/{tenant_id}", {"alert_channels": channels}, tenant_id=tenant_id
    )

    assert result.status_code == 200
    secret_fields = ("slack_webhook_url", "pagerduty_routing_key", "webhook_secret")
    assert result.json["alert_channels"] == {
        **channels,
        **dict.fromkeys(secret_fields, "***"),
    }, "the secrets are sealed, never answered"
    assert set(result.json["alert_channel_fingerprints"]) == set(secret_fields)
    cleared = admin.patch("/v1/tenants/{tenant_id}", {"alert_channels": None}, tenant_id=tenant_id)
    assert cleared.json["alert_channels"] is None


def test_a_tenant_alert_webhook_needs_a_valid_secret(admin: Api, tenant: Api) -> None:
    tenant_id = _tenant_id(tenant)
    route = "/v1/tenants/{tenant_id}"

    assert_problem(
        admin.patch(
            route, {"alert_channels": {"webhook_url": "https://x.example"}}, tenant_id=tenant_id
        ),
        422,
    )
    bad = {"webhook_url": "https://x.example", "webhook_secret": "whsec_" + "A" * 33}  # not base64
    result = admin.patch(route, {"alert_channels": bad}, tenant_id=tenant_id)
    assert_problem(result, 422, "alert_channels.webhook_secret")


def _tenant_id(tenant: Api) -> str:
    assert tenant.key is not None
    principal = authenticate_key(tenant.key)
    assert principal is not None
    return principal.tenant_id
