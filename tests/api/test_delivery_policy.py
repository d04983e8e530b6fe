"""The delivery policy is middleware on the worker's broker, and the recorder decides by it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dramatiq.middleware import Middleware

from actors import worker
from actors.lifecycle import Attempts
from actors.middleware import DeliveryAgeLimit, DeliveryPolicy, Quarantine, RetrySchedule
from engine.db.models import Delivery, utcnow
from engine.deliveries import fanout
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.settings import Settings


def test_printing_the_worker_brokers_middleware_shows_the_whole_delivery_policy(
    sqlite_settings: Settings, sqlite_db: Any
) -> None:
    settings = sqlite_settings.with_overrides(retry_schedule_s=(7, 70), max_age_s=3600)

    broker, _runtime = worker.build(settings, sqlite_db)

    shown = repr(broker.middleware)
    assert "RetrySchedule(schedule_s=(7, 70))" in shown
    assert "DeliveryAgeLimit(max_age_s=3600)" in shown
    assert "Quarantine(queue_name='hookline.quarantine')" in shown
    policy = DeliveryPolicy.on(broker)
    assert (policy.retries.schedule_s, policy.age_limit.max_age_s) == ((7, 70), 3600)


def swap(middleware: list[Middleware], part: Middleware) -> None:
    """Put `part` where the broker has the middleware of its kind."""
    [index] = [n for n, m in enumerate(middleware) if type(m) is type(part)]
    middleware[index] = part


@pytest.mark.parametrize(
    ("part", "action", "delay_s", "reason"),
    [
        (RetrySchedule([120], rand=lambda: 0.5), "retry", 120.0, None),
        (RetrySchedule([3600, 7200], rand=lambda: 0.5), "retry", 3600.0, None),
        (DeliveryAgeLimit(1), "quarantine", None, "expired"),
    ],
)
def test_the_recorder_decides_by_the_policy_it_finds_on_the_broker(
    sqlite_settings: Settings,
    sqlite_db: Any,
    create_endpoint: Callable[..., dict[str, Any]],
    publish: Callable[..., dict[str, Any]],
    part: Middleware,
    action: str,
    delay_s: float | None,
    reason: str | None,
) -> None:
    broker, runtime = worker.build(sqlite_settings, sqlite_db)
    swap(broker.middleware, part)
    [attempts] = [m for m in broker.middleware if isinstance(m, Attempts)]
    attempts.before_worker_boot(broker, None)  # type: ignore[arg-type]
    assert runtime.pipeline is not None
    create_endpoint(url="https://receiver.example.com/hook")
    [delivery_id] = fanout.fan_out(publish()["id"])
    claimed = deliveries.claim(delivery_id, lease_s=30)
    assert claimed is not None
    failed = Outcome(utcnow(), 5.0, status_code=500, error_class="http_status")

    with sqlite_db.connection_context():
        [decision] = runtime.pipeline.recorder.record([(claimed, failed)])

    assert (decision.action, decision.delay_s, decision.reason) == (action, delay_s, reason)
    stored = Delivery.get_by_id(delivery_id)
    assert stored.status == ("scheduled" if action == "retry" else "quarantined")
    runtime.pipeline.drain(1.0)


def test_a_broker_without_the_whole_policy_is_refused_at_boot(
    sqlite_settings: Settings, sqlite_db: Any
) -> None:
    broker, _runtime = worker.build(sqlite_settings, sqlite_db)
    broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, Quarantine)]
    [attempts] = [m for m in broker.middleware if isinstance(m, Attempts)]

    with pytest.raises(LookupError, match="Quarantine"):
        attempts.before_worker_boot(broker, None)  # type: ignore[arg-type]
