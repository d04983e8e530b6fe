"""Plain functions that build what tests need."""

from __future__ import annotations

import os
import time
from typing import Any

from engine.endpoints.crud import create_endpoint
from engine.secretbox import SecretBox
from engine.settings import Settings
from engine.ssrf import AddressPolicy
from engine.tenancy.tenants import create_tenant

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
# Base64 of 32 fixed bytes: the endpoint-secret encryption key every test process shares.
SECRET_KEY = "aG9va2xpbmUtdGVzdHMtc2VjcmV0LWtleS0zMmJ5dGU="


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: loopback allowed, short timeouts, a fast scheduler."""
    base = {
        "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS": "true",
        "HOOKLINE_REQUEST_TIMEOUT_S": "5",
        "HOOKLINE_CONNECT_TIMEOUT_S": "2",
        "HOOKLINE_SCHEDULER_INTERVAL_S": "0.2",
        "HOOKLINE_LOG_FORMAT": "json",
        "HOOKLINE_ADMIN_TOKEN": ADMIN_TOKEN,
        # A configured key: no test writes a key file into the working directory.
        "HOOKLINE_SECRET_KEY": SECRET_KEY,
    }
    base.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(base)


def eventually(probe: Any, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    """Call `probe` until it answers something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: last answer {result!r}")
        time.sleep(interval_s)


def endpoint_body(**fields: Any) -> dict[str, Any]:
    """A valid `POST /v1/endpoints` body; keyword arguments replace or add fields."""
    return {"url": "https://receiver.example.com/hooks", **fields}


def make_endpoint(url: str = "https://example.com/hook", tenant: str = "acme") -> Any:
    """A new tenant and an endpoint of it, on the bound database; answer the endpoint row."""
    tenant_id = create_tenant(tenant)[0].id
    row, _ = create_endpoint(tenant_id, {"url": url}, AddressPolicy(), SecretBox(os.urandom(32)))
    return row


def event_body(event_type: str = "order.paid", **fields: Any) -> dict[str, Any]:
    """A valid `POST /v1/events` body; keyword arguments replace or add fields."""
    return {"event_type": event_type, "payload": {"order_id": 42}, **fields}


class Clock:
    """A clock tests move by hand (`clock.now += 2`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
