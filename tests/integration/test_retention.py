"""Retention on PostgreSQL: daily partitions made ahead and dropped, live work kept,
a tenant kept shorter purged by batched deletes, and the migration of old tables."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from engine.db import partitions
from engine.db.connect import bind
from engine.db.migrations import latest_version, migrate
from engine.db.models import Delivery, Endpoint, Event, EventKey, Tenant, utcnow
from engine.ids import new_id
from engine.retention import LIVE, Retention, days, measure
from engine.tenancy.tenants import create_tenant
from tests.factories import make_endpoint, make_settings
from tests.retention_rows import aged_event, stored
from tests.services import new_database

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


@pytest.fixture(scope="module")
def own_pg() -> Iterator[str]:
    """A database of the module's own. The session's (`pg_migrated`) may have a scheduler
    running on it (`stack`), whose retention and fan-out passes raced these tests in CI:
    they dropped day 45 between two of its asserts and fanned out the pending event."""
    with new_database("_retention") as url:
        database = bind(make_settings(HOOKLINE_DATABASE_URL=url))
        migrate(database)
        database.close_all()
        yield url


@pytest.fixture
def pg(own_pg: str) -> Iterator[Any]:
    database = bind(make_settings(HOOKLINE_DATABASE_URL=own_pg))
    database.connect(reuse_if_open=True)
    yield database
    database.close_all()


def _days_ago(n: int) -> dt.date:
    return (utcnow() - dt.timedelta(days=n)).date()


def test_partitions_are_made_ahead_and_past_days_dropped_but_live_work_stays(pg: Any) -> None:
    endpoint = make_endpoint(tenant="dropped")
    partitions.create_days(pg, [_days_ago(40)])
    done = [aged_event(endpoint, 40, key=f"old-{n}", attempts=2) for n in range(3)]
    live = {status: aged_event(endpoint, 40, status=status) for status in LIVE}
    unfanned = aged_event(endpoint, 40, fanned_out=False)
    recent = aged_event(endpoint, 1)
    backfilled = aged_event(endpoint, 40)  # its live delivery was made today: a backfill's
    Delivery.insert(
        id=new_id("dlv"),
        tenant_id=endpoint.tenant_id,
        event_id=backfilled,
        endpoint_id=endpoint.id,
        event_type="order.paid",
        status="scheduled",
        event_created_at=utcnow() - dt.timedelta(days=40),
        created_at=utcnow(),
        updated_at=utcnow(),
    ).execute()

    report = Retention(pg, default_days=30, batch=100).run_once()

    today = utcnow().date()
    ahead = {today + dt.timedelta(days=n) for n in range(4)}
    assert ahead <= set(partitions.partition_days(pg))
    assert _days_ago(40) in report.dropped
    assert _days_ago(40) not in partitions.partition_days(pg)
    for event_id in done:
        assert stored(event_id) == (0, 0, 0)
    assert not EventKey.select().where(EventKey.idempotency_key.startswith("old-")).exists()
    for event_id in [*live.values(), recent]:
        assert stored(event_id) == (1, 1, 1)
    assert stored(unfanned)[0] == 1  # its fan-out is still to come
    assert Event.select().where(Event.id == backfilled).exists(), "its delivery needs it"
    assert report.kept_rows == 3 * len(LIVE) + 1 + 1

    # The live work ends: the next pass deletes it from the default partition.
    Delivery.update(status="succeeded").where(Delivery.event_id.in_(list(live.values()))).execute()
    Retention(pg, default_days=30, batch=100).run_once()
    for event_id in live.values():
        assert stored(event_id) == (0, 0, 0)
    assert stored(unfanned)[0] == 1


def test_a_drop_that_finds_a_table_in_use_never_makes_traffic_wait_and_tries_again(
    pg: Any, own_pg: str
) -> None:
    endpoint = make_endpoint(tenant="busy")  # a day of its own: the first test's leaves rows
    partitions.create_days(pg, [_days_ago(45)])
    old = aged_event(endpoint, 45, attempts=1)
    reader = psycopg2.connect(own_pg)
    traffic = psycopg2.connect(own_pg)
    traffic.autocommit = True
    try:
        with reader.cursor() as cur:  # a long transaction that has read the attempts
            cur.execute("SELECT count(*) FROM attempt")
        refused: list[BaseException] = []
        started = time.monotonic()
        dropping = threading.Thread(target=_refused_into, args=(refused, _days_ago(45)))
        dropping.start()
        waited = []
        with traffic.cursor() as cur:  # requests meanwhile: none queues behind the drop
            cur.execute("SET statement_timeout = 50")
            while dropping.is_alive():
                asked = time.monotonic()
                cur.execute("SELECT 1 FROM attempt LIMIT 1")
                waited.append(time.monotonic() - asked)
        dropping.join()
        assert len(waited) > 5 and max(waited) < 0.05, f"{len(waited)} requests"
        [error] = refused
        assert days.is_lock_timeout(error)
        assert time.monotonic() - started < 5.0, "its tries are bounded"
        assert _days_ago(45) in partitions.partition_days(pg), "nothing half done"

        reader.rollback()
        assert days.drop_day(_days_ago(45)).rows == 3, "the next pass drops it"
        assert stored(old) == (0, 0, 0)
    finally:
        reader.close()
        traffic.close()


def test_a_drop_finds_the_live_work_through_indexes_not_by_reading_the_day(pg: Any) -> None:
    """What the drop reads under its locks costs what is live, not the day's size."""
    endpoint = make_endpoint(tenant="indexed")
    day = _days_ago(50)
    partitions.create_days(pg, [day])
    live = [aged_event(endpoint, 50, status="scheduled") for _ in range(4)]
    at = utcnow() - dt.timedelta(days=50)
    ms = int(time.time() * 1000 - 50 * 86_400_000)
    Delivery.insert_many(  # a day's done work, enough that reading it all costs more
        [
            {
                "id": new_id("dlv", now_ms=ms + n),
                "tenant_id": endpoint.tenant_id,
                "event_id": new_id("evt", now_ms=ms + n),
                "endpoint_id": endpoint.id,
                "event_type": "order.paid",
                "status": "succeeded",
                "attempts": 1,
                "event_created_at": at,
                "created_at": at,
                "updated_at": at,
            }
            for n in range(20_000)
        ]
    ).execute()
    partition = partitions.name("delivery", day)
    pg.execute_sql(f'ANALYZE "{partition}"')

    plan = "\n".join(row[0] for row in pg.execute_sql("EXPLAIN " + days.live_sql(partition)))

    assert "Seq Scan" not in plan, plan
    assert sorted(row[1] for row in pg.execute_sql(days.live_sql(partition))) == sorted(live)
    assert days.drop_day(day).kept == 4 * 3, "each live delivery, its attempt and its event"


def test_the_scheduler_measures_each_table_on_disk_and_the_oldest_partition(pg: Any) -> None:
    sizes = measure(pg)

    assert set(sizes.rows) == set(sizes.bytes) == {"event", "delivery", "attempt", "event_key"}
    assert all(size and size > 0 for size in sizes.bytes.values()), sizes.bytes
    assert all(rows >= 0 for rows in sizes.rows.values())
    assert sizes.oldest is not None
    assert sizes.oldest.date() == min(partitions.partition_days(pg)) <= utcnow().date()


def _refused_into(errors: list[BaseException], day: dt.date) -> None:
    try:
        days.drop_day(day)
    except Exception as exc:  # noqa: BLE001 - the test reads it
        errors.append(exc)


def test_a_tenant_kept_shorter_is_purged_inside_live_partitions(pg: Any) -> None:
    short, other = make_endpoint(tenant="short"), make_endpoint(tenant="other")
    Tenant.update(retention_days=5).where(Tenant.id == short.tenant_id).execute()
    short_old = [aged_event(short, 6, key=f"short-{n}") for n in range(5)]
    short_live = aged_event(short, 6, status="parked")
    short_new, other_old = aged_event(short, 4), aged_event(other, 6)

    report = Retention(pg, default_days=30, batch=2).run_once()

    assert report.dropped == []
    for event_id in short_old:
        assert stored(event_id) == (0, 0, 0)
    for event_id in (short_live, short_new, other_old):
        assert stored(event_id) == (1, 1, 1)
    assert not EventKey.select().where(EventKey.idempotency_key.startswith("short-")).exists()
    Tenant.update(retention_days=None).where(Tenant.id == short.tenant_id).execute()


# --- the migration of unpartitioned tables ----------------------------------------------

ROWS = 25_000
RETENTION_STEP = 15  # the migration that partitions the tables


def _old_rows(url: str) -> None:
    """A database at version 14 with ROWS events, deliveries and attempts over 40 days."""
    database = bind(make_settings(HOOKLINE_DATABASE_URL=url))
    migrate(database, until=RETENTION_STEP - 1)
    endpoint = None
    with database.connection_context():
        # Only the columns version 14 has: today's `create_endpoint` writes later ones.
        tenant = create_tenant("old")[0]
        at = utcnow()
        Endpoint.insert(
            id=new_id("ep"),
            tenant_id=tenant.id,
            url="https://example.com/hook",
            secret="whsec_" + "A" * 32,
            status="active",
            created_at=at,
            updated_at=at,
        ).execute()
        endpoint = Endpoint.select(Endpoint.id, Endpoint.tenant_id).get()
    now_ms = int(time.time() * 1000)
    step = 40 * 86_400_000 // ROWS
    events, deliveries, attempts = io.StringIO(), io.StringIO(), io.StringIO()
    for n in range(ROWS):
        ms = now_ms - n * step
        at = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)
        event_id, delivery_id = new_id("evt", now_ms=ms), new_id("dlv", now_ms=ms)
        key = f"key-{n}" if n % 3 == 0 else "\\N"
        t = endpoint.tenant_id
        events.write(f"{event_id}\t{t}\torder.paid\t{{}}\t{key}\t{at}\n")
        deliveries.write(
            f"{delivery_id}\t{t}\t{event_id}\t{endpoint.id}\torder.paid\tsucceeded\t1\t{at}\t{at}\t{at}\n"
        )
        attempts.write(f"{new_id('att', now_ms=ms)}\t{t}\t{delivery_id}\t1\t{at}\t1.0\tsuccess\n")
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        for table, columns, data in (
            ("event", "id, tenant_id, event_type, payload, idempotency_key, created_at", events),
            (
                "delivery",
                "id, tenant_id, event_id, endpoint_id, event_type, status, attempts, "
                "event_created_at, created_at, updated_at",
                deliveries,
            ),
            (
                "attempt",
                "id, tenant_id, delivery_id, number, started_at, duration_ms, outcome",
                attempts,
            ),
        ):
            data.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", data)
        cursor.execute("DELETE FROM event_fan_out")
    database.close_all()


def _fingerprint(url: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        found = []
        for table in ("event", "delivery", "attempt"):
            cursor.execute(f"SELECT COUNT(*), MD5(STRING_AGG(id, ',' ORDER BY id)) FROM {table}")
            found.append(cursor.fetchone())
        return found


def test_the_migration_keeps_every_row_and_resumes_after_a_kill() -> None:
    with new_database("_retention_migrate") as url:
        _old_rows(url)
        before = _fingerprint(url)
        env = {**os.environ, "HOOKLINE_DATABASE_URL": url}
        command = [sys.executable, "-m", "api.cli", "migrate"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        with psycopg2.connect(url) as watch:
            watch.autocommit = True
            position = _wait_for_progress(watch, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert position.startswith("event:")

        again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)

        applied = json.loads(again.stdout.strip().splitlines()[-1])["applied"]
        assert applied == list(range(RETENTION_STEP, latest_version() + 1))  # 15 resumed
        assert '"migration_resumed"' in again.stderr or "migration_resumed" in again.stdout
        assert _fingerprint(url) == before
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM event_key")
            assert cursor.fetchone() == ((ROWS + 2) // 3,)  # every third event has a key
        database = bind(make_settings(HOOKLINE_DATABASE_URL=url))
        with database.connection_context():
            assert partitions.is_partitioned(database)
            assert Event.select().count() == ROWS
        database.close_all()


def _wait_for_progress(watch: Any, process: subprocess.Popen[bytes]) -> str:
    """The copy's first committed position, read while the migrator copies on."""
    deadline = time.monotonic() + 60
    with watch.cursor() as cursor:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the migrator ended before it was killed"
            cursor.execute("SELECT to_regclass('schema_progress') IS NOT NULL")
            if cursor.fetchone()[0]:
                cursor.execute("SELECT position FROM schema_progress")
                row = cursor.fetchone()
                if row and row[0]:
                    return str(row[0])
            time.sleep(0.005)
    raise AssertionError("the copy never progressed")
