"""Outcome batches folded once per message, however often RabbitMQ hands one out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from peewee import fn

from engine.breakers import folds
from engine.breakers import store as health
from engine.breakers import tick as supervision
from engine.breakers.state import Policy
from engine.db.models import Endpoint, HealthBucket, SupervisedMessage, db, utcnow
from tests.factories import make_endpoint


@pytest.fixture
def endpoint(sqlite_db: Any) -> Endpoint:
    return make_endpoint()


def outcomes(endpoint: Endpoint, ok: int, failed: int) -> list[health.Observation]:
    now = utcnow()
    return [
        health.Observation(endpoint.id, n < ok, now, 200 if n < ok else 500, f"dlv_{n}")
        for n in range(ok + failed)
    ]


def counted(endpoint: Endpoint) -> tuple[int, int]:
    row = HealthBucket.select(
        fn.SUM(HealthBucket.successes).alias("ok"), fn.SUM(HealthBucket.failures).alias("failed")
    ).where(HealthBucket.endpoint_id == endpoint.id)
    found = row.dicts().get()
    return int(found["ok"] or 0), int(found["failed"] or 0)


def test_a_redelivered_message_is_folded_once(endpoint: Endpoint) -> None:
    batch = outcomes(endpoint, 3, 2)

    first = health.fold(batch, policy=Policy(), message_id="msg-1")
    again = health.fold(batch, policy=Policy(), message_id="msg-1")
    other = health.fold(batch[:1], policy=Policy(), message_id="msg-2")

    assert first == [] and other == []
    assert again is None
    assert counted(endpoint) == (4, 2)
    assert SupervisedMessage.select().count() == 2


def test_a_fold_rolled_back_forgets_its_message_so_the_retry_counts(endpoint: Endpoint) -> None:
    batch = outcomes(endpoint, 1, 1)

    with pytest.raises(RuntimeError), db.atomic():
        assert health.fold(batch, policy=Policy(), message_id="msg-1") == []
        raise RuntimeError("the commit failed")

    assert counted(endpoint) == (0, 0)
    assert health.fold(batch, policy=Policy(), message_id="msg-1") == []
    assert counted(endpoint) == (1, 1)


def test_without_a_message_id_every_fold_counts(endpoint: Endpoint) -> None:
    batch = outcomes(endpoint, 1, 0)
    health.fold(batch, policy=Policy())
    health.fold(batch, policy=Policy())
    assert counted(endpoint) == (2, 0)


def test_pruning_forgets_only_ids_older_than_a_day_a_batch_at_a_time(sqlite_db: Any) -> None:
    now = utcnow()
    old = now - dt.timedelta(seconds=folds.KEEP_S + 60)
    for n in range(5):
        assert folds.first_time(f"old-{n}", old)
    assert folds.first_time("fresh", now - dt.timedelta(seconds=folds.KEEP_S - 60))

    assert folds.prune(now, batch=3) == 3
    assert folds.prune(now, batch=3) == 2
    assert folds.prune(now, batch=3) == 0
    assert [row.message_id for row in SupervisedMessage.select()] == ["fresh"]
    assert not folds.first_time("fresh", now), "a remembered id is still refused"

    assert folds.first_time("old-again", old)
    assert supervision.prune(now) == 1, "the scheduler's tick prunes them too"
