"""Retention on SQLite: the admin's per-tenant override, and the batched deletes."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from actors.retention_pass import FIGURES, RetentionPass
from engine.audit import log as audit_log
from engine.db.models import AuditEntry, EventKey, Tenant, utcnow
from engine.retention import LIVE, Retention
from engine.settings import Settings
from tests.api.support import Api, assert_problem
from tests.factories import make_endpoint
from tests.retention_rows import aged_event, stored

TENANT = "/v1/tenants/{tenant_id}"


def test_the_admin_sets_a_tenants_retention_and_it_shows(admin: Api) -> None:
    created = admin.post("/v1/tenants", {"name": "Short"}).json

    assert (
        admin.patch(TENANT, {"name": "Short"}, tenant_id=created["id"]).json["retention_days"]
        is None
    )
    changed = admin.patch(TENANT, {"retention_days": 7}, tenant_id=created["id"])

    assert changed.json["retention_days"] == 7
    assert Tenant.get_by_id(created["id"]).retention_days == 7
    reset = admin.patch(TENANT, {"retention_days": None}, tenant_id=created["id"])
    assert reset.json["retention_days"] is None


@pytest.mark.parametrize("days", [0, 3651, "30", 1.5])
def test_a_retention_out_of_range_is_422_naming_the_field(admin: Api, days: Any) -> None:
    created = admin.post("/v1/tenants", {"name": "Bad"}).json

    result = admin.patch(TENANT, {"retention_days": days}, tenant_id=created["id"])

    assert_problem(result, 422, "retention_days")


def test_sqlite_deletes_in_batches_what_is_past_retention_and_done(sqlite_db: Any) -> None:
    endpoint = make_endpoint()
    old = [aged_event(endpoint, 31 + n / 100, key=f"k{n}", attempts=2) for n in range(7)]
    quarantined = aged_event(endpoint, 40, status="quarantined")
    live = {status: aged_event(endpoint, 40, status=status) for status in LIVE}
    unfanned = aged_event(endpoint, 40, fanned_out=False)
    recent = aged_event(endpoint, 29, key="recent")

    report = Retention(sqlite_db, default_days=30, batch=3).run_once()

    for event_id in [*old, quarantined]:
        assert stored(event_id) == (0, 0, 0)
    for event_id in [*live.values(), unfanned, recent]:
        assert stored(event_id)[:2] == (1, 1)
    assert [key.idempotency_key for key in EventKey.select()] == ["recent"]
    assert report.deleted_rows == 8 * 3 + 7 + 7  # 8 events, deliveries, attempts; 7 more; 7 keys
    assert report.dropped == []


def test_a_tenant_kept_shorter_loses_only_its_own_old_rows(sqlite_db: Any) -> None:
    short, other = make_endpoint(tenant="short"), make_endpoint(tenant="other")
    Tenant.update(retention_days=5).where(Tenant.id == short.tenant_id).execute()
    short_old, short_new = aged_event(short, 6), aged_event(short, 4)
    other_old = aged_event(other, 6)
    longer = make_endpoint(tenant="longer")
    Tenant.update(retention_days=60).where(Tenant.id == longer.tenant_id).execute()
    longer_kept = aged_event(longer, 45)

    Retention(sqlite_db, default_days=30, batch=10).run_once(now=dt.datetime.utcnow())

    assert stored(short_old) == (0, 0, 0)
    assert stored(short_new) == (1, 1, 1)
    assert stored(other_old) == (1, 1, 1)
    assert stored(longer_kept) == (1, 1, 1)


def test_the_audit_log_follows_the_retentions_of_the_installation_and_the_tenant(
    sqlite_db: Any,
) -> None:
    short = Tenant.create(id="ten_short", name="Short", retention_days=7)
    now = utcnow()

    def entry(tenant_id: str | None, age_days: float) -> str:
        change = audit_log.Change(tenant_id, "admin", "admin", "PATCH /v1/x", None, 200, None)
        return audit_log.record(change, now=now - dt.timedelta(days=age_days))

    kept = [entry(None, 29), entry("ten_other", 29), entry(short.id, 6)]
    gone = [entry(None, 31), entry("ten_other", 31), entry(short.id, 8)]

    report = Retention(sqlite_db, default_days=30, batch=2).run_once(now)

    assert sorted(row.id for row in AuditEntry.select()) == sorted(kept)
    assert report.deleted_rows == len(gone)


def test_the_scheduler_exports_sizes_oldest_data_and_the_last_purge_once_it_has_run(
    sqlite_db: Any, sqlite_settings: Settings
) -> None:
    endpoint = make_endpoint()
    for n in range(3):
        aged_event(endpoint, 40 + n, attempts=2)
    kept = aged_event(endpoint, 2)
    FIGURES.sizes, FIGURES.last_purge_at, FIGURES.removed = None, None, {"drop": 0, "delete": 0}
    assert list(FIGURES.collect()) == [], "nothing shown before the first measure, not zeros"
    before = time.time()

    assert RetentionPass(sqlite_settings, sqlite_db).run() is False

    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in FIGURES.collect()
        for sample in family.samples
    }
    assert found[("hookline_table_rows", (("table", "event"),))] == 1
    assert found[("hookline_table_rows", (("table", "attempt"),))] == 1
    assert found[("hookline_retention_removed_rows_total", (("how", "delete"),))] == 3 * 4
    assert found[("hookline_retention_last_purge_rows", ())] == 3 * 4
    assert before <= found[("hookline_retention_last_purge_timestamp_seconds", ())] <= time.time()
    oldest = found[("hookline_oldest_partition_timestamp_seconds", ())]
    assert abs(oldest - (time.time() - 2 * 86_400)) < 60, "the oldest event left: 2 days old"
    assert stored(kept) == (1, 1, 1)
