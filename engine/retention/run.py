"""One retention pass: partitions made ahead, past days dropped, the rest purged in batches.

The scheduler runs a pass every `retention_interval_s` (and the next at once
while work remains); a pass stops after `budget_s` so it never holds the
scheduler's other duties back for long.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any, cast

import structlog

from engine.audit import log as audit_log
from engine.db import partitions
from engine.db.models import Tenant, utcnow
from engine.ids import floor_id
from engine.retention import days
from engine.retention.purge import Scope, purge_batch
from engine.tenancy import oauth

log = structlog.get_logger("hookline.retention")


@dataclasses.dataclass
class Report:
    """What one pass did."""

    created: list[dt.date] = dataclasses.field(default_factory=list)
    dropped: list[dt.date] = dataclasses.field(default_factory=list)
    dropped_rows: int = 0  # rows gone with dropped partitions
    kept_rows: int = 0  # live rows of dropped days kept in the default partitions
    deleted_rows: int = 0  # rows removed by batched deletes
    more: bool = False  # the budget ran out with work left


class Retention:
    """Runs retention passes over one database (PostgreSQL partitioned, or SQLite)."""

    def __init__(
        self, database: Any, *, default_days: int, batch: int, budget_s: float = 0.5
    ) -> None:
        self.database = database
        self.default_days = default_days
        self.batch = batch
        self.budget_s = budget_s

    def run_once(self, now: dt.datetime | None = None) -> Report:
        """One pass; see the module's docstring."""
        now = now or utcnow()
        deadline = time.monotonic() + self.budget_s
        report = Report()
        overrides = _overrides()
        longest = max([self.default_days, *overrides.values()])
        partitioned = partitions.is_partitioned(self.database)
        if partitioned:
            try:
                report.created = days.create_ahead(self.database, now.date())
            except Exception as exc:
                if not days.is_lock_timeout(exc):
                    raise
                log.info("retention_partitions_postponed", reason="lock timeout")
            self._drop(now, longest, report, deadline)
        for scope, kept_days in _scopes(overrides, self.default_days):
            # Past the longest retention, whole days go by DROP: only the default partition's
            # rows (a dropped day's live work, once done) are deleted one by one.
            table = "event_default" if partitioned and kept_days >= longest else "event"
            self._purge(table, _bound(now, kept_days), scope, report, deadline)
        # The audit log follows the same retentions (a small table: purged whole each pass).
        report.deleted_rows += audit_log.purge(
            now - dt.timedelta(days=self.default_days),
            tenant_cutoffs={t: now - dt.timedelta(days=d) for t, d in overrides.items()},
            batch=self.batch,
        )
        # Revocations of access tokens that have expired anyway guard nothing any more.
        report.deleted_rows += oauth.sweep_revoked(now)
        return report

    def _drop(self, now: dt.datetime, longest: int, report: Report, deadline: float) -> None:
        for day in days.droppable(self.database, now, longest):
            while days.forget_keys(day, batch=self.batch * 10):
                if time.monotonic() > deadline:
                    report.more = True
                    return
            try:
                drop = days.drop_day(day)
            except Exception as exc:
                if not days.is_lock_timeout(exc):
                    raise
                log.info("retention_drop_postponed", day=day.isoformat(), reason="lock timeout")
                return
            report.dropped.append(day)
            report.dropped_rows += drop.rows
            report.kept_rows += drop.kept
            log.info(
                "retention_day_dropped",
                day=day.isoformat(),
                rows=drop.rows,
                kept=drop.kept,
                locked_ms=round(drop.held_s * 1000, 1),
                tries=drop.tries,
            )
            if time.monotonic() > deadline:
                report.more = True
                return

    def _purge(
        self, table: str, before: str, scope: Scope, report: Report, deadline: float
    ) -> None:
        while not report.more:
            looked, deleted = purge_batch(table, before, scope, batch=self.batch)
            report.deleted_rows += deleted
            if looked < self.batch:
                return
            report.more = time.monotonic() > deadline


def _overrides() -> dict[str, int]:
    """The tenants' own retentions, by tenant."""
    query = Tenant.select(Tenant.id, Tenant.retention_days).where(
        Tenant.retention_days.is_null(False)
    )
    rows = cast("list[tuple[str, int]]", list(query.tuples()))
    return {str(tenant_id): int(kept) for tenant_id, kept in rows}


def _scopes(overrides: dict[str, int], default_days: int) -> list[tuple[Scope, int]]:
    """Tenants grouped by how long they are kept: each override, then everyone else."""
    by_days: dict[int, list[str]] = {}
    for tenant_id, kept_days in overrides.items():
        by_days.setdefault(kept_days, []).append(tenant_id)
    scopes = [(Scope(tenants=sorted(ids)), kept) for kept, ids in sorted(by_days.items())]
    return [*scopes, (Scope(excluded=sorted(overrides)), default_days)]


def _bound(now: dt.datetime, kept_days: int) -> str:
    """The lowest event id kept: that of the moment `kept_days` before `now`."""
    horizon = now - dt.timedelta(days=kept_days)
    return floor_id("evt", int(horizon.replace(tzinfo=dt.UTC).timestamp() * 1000))
