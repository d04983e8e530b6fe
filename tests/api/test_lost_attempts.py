"""Poison deliveries: claims that keep dying with their worker end in quarantine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from engine.db.models import DELIVERING, QUARANTINED, Delivery, utcnow
from engine.deliveries import fanout, lost
from engine.deliveries import record as deliveries
from engine.deliveries import schedule as scheduling
from tests.api.support import attempt, outcome

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


def _die(delivery_id: str) -> None:
    """A worker claimed it, then died mid-attempt: its lease runs out, nothing recorded."""
    assert deliveries.claim_many([delivery_id], lease_s=60)
    past = utcnow() - dt.timedelta(seconds=1)
    Delivery.update(lease_until=past).where(Delivery.id == delivery_id).execute()


def test_a_delivery_whose_claims_die_limit_times_is_quarantined_and_not_published_again(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    create_endpoint()
    (delivery_id,) = fanout.fan_out(publish()["id"])
    for _ in range(2):
        _die(delivery_id)
        assert lost.quarantine_lost(limit=3, batch=10) == []
        assert scheduling.take_expired(batch=10, lease_s=60) == [delivery_id]
    _die(delivery_id)

    assert lost.quarantine_lost(limit=3, batch=10) == [delivery_id]

    row = Delivery.get_by_id(delivery_id)
    assert (row.status, row.quarantine_reason, row.attempts) == (QUARANTINED, "lost_attempts", 3)
    assert "without an outcome" in row.last_error
    assert row.quarantined_at is not None and row.lease_until is None
    assert scheduling.take_expired(batch=10, lease_s=60) == []


def test_recorded_attempts_and_running_leases_are_not_lost(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    for _ in range(2):
        create_endpoint()
    failing, alive = sorted(fanout.fan_out(publish()["id"]))
    for _ in range(2):  # two attempts that failed, each recorded: retries, not losses
        attempt(failing, outcome(500))
        Delivery.update(status="queued").where(Delivery.id == failing).execute()
    _die(failing)  # and one claim lost: 1 of 3
    for _ in range(3):  # three claims unrecorded, but the last worker's lease still runs
        assert deliveries.claim_many([alive], lease_s=60)
        Delivery.update(status="queued").where(Delivery.id == alive).execute()
    assert deliveries.claim_many([alive], lease_s=60)

    assert lost.quarantine_lost(limit=3, batch=10) == []
    assert Delivery.get_by_id(alive).status == DELIVERING
    assert scheduling.take_expired(batch=10, lease_s=60) == [failing]


def test_a_redelivered_message_does_not_take_a_lapsed_claim_at_the_limit_again(
    publish: Publish, create_endpoint: CreateEndpoint
) -> None:
    # A worker killed mid-attempt leaves its message to RabbitMQ, which hands it to the next
    # worker; if that one starts after the lease ran out, it must not send the poison again
    # before the scheduler quarantines it (seen as a third request in the poison test).
    create_endpoint()
    (delivery_id,) = fanout.fan_out(publish()["id"])
    _die(delivery_id)
    assert deliveries.claim_many([delivery_id], lease_s=60, max_lost=2)  # 1 lost: taken again
    Delivery.update(lease_until=utcnow() - dt.timedelta(seconds=1)).where(
        Delivery.id == delivery_id
    ).execute()

    assert deliveries.claim_many([delivery_id], lease_s=60, max_lost=2) == []

    row = Delivery.get_by_id(delivery_id)
    assert (row.status, row.attempts) == (DELIVERING, 2)
    assert lost.quarantine_lost(limit=2, batch=10) == [delivery_id]
