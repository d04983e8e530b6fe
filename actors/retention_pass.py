"""The scheduler's retention pass, and the gauges only the scheduler can tell.

Every `retention_interval_s` (at once again while a pass left work) the active
scheduler runs `engine.retention.Retention.run_once` and measures the tables.
The figures are exported by a collector registered in the scheduler's process
only, and only once it has measured: no other process shows them as zeros.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.db.connect import UNAVAILABLE_ERRORS
from engine.retention import Report, Retention, Sizes, measure
from engine.settings import Settings

log = structlog.get_logger("hookline.retention")


class RetentionFigures(Collector):
    """The last measured sizes and purges, as metric families."""

    def __init__(self) -> None:
        self.sizes: Sizes | None = None
        self.last_purge_at: float | None = None
        self.last_purge_rows = 0
        self.removed = {"drop": 0, "delete": 0}

    def record(self, report: Report, at: float) -> None:
        removed = report.dropped_rows + report.deleted_rows
        self.removed["drop"] += report.dropped_rows
        self.removed["delete"] += report.deleted_rows
        if removed:
            self.last_purge_at, self.last_purge_rows = at, removed

    def collect(self) -> Iterator[Any]:
        if self.sizes is None:
            return
        rows = GaugeMetricFamily(
            "hookline_table_rows",
            "Rows per retained table (PostgreSQL: estimates).",
            labels=["table"],
        )
        size = GaugeMetricFamily(
            "hookline_table_bytes", "Bytes per retained table, indexes included.", labels=["table"]
        )
        for table, count in self.sizes.rows.items():
            rows.add_metric([table], count)
            if self.sizes.bytes[table] is not None:
                size.add_metric([table], float(self.sizes.bytes[table] or 0))
        yield rows
        yield size
        if self.sizes.oldest is not None:
            yield GaugeMetricFamily(
                "hookline_oldest_partition_timestamp_seconds",
                "Start of the oldest daily partition (SQLite: the oldest event's time).",
                value=self.sizes.oldest.replace(tzinfo=dt.UTC).timestamp(),
            )
        if self.last_purge_at is not None:
            yield GaugeMetricFamily(
                "hookline_retention_last_purge_timestamp_seconds",
                "When retention last removed rows.",
                value=self.last_purge_at,
            )
            yield GaugeMetricFamily(
                "hookline_retention_last_purge_rows",
                "Rows retention removed in its last pass that removed any.",
                value=self.last_purge_rows,
            )
        removed = CounterMetricFamily(
            "hookline_retention_removed_rows",
            "Rows retention removed, by how: a dropped partition or a batched delete.",
            labels=["how"],
        )
        for how, count in self.removed.items():
            removed.add_metric([how], count)
        yield removed


FIGURES = RetentionFigures()
_registered: list[bool] = []


class RetentionPass:
    """Runs retention from the scheduler's loop, on its schedule."""

    def __init__(self, settings: Settings, database: Any) -> None:
        self.settings = settings
        self.retention = Retention(
            database, default_days=settings.retention_days, batch=settings.retention_batch
        )
        self.database = database
        self._due_at = 0.0
        if not _registered:
            REGISTRY.register(FIGURES)
            _registered.append(True)

    def run(self) -> bool:
        """A pass if one is due; True when it left work for the next. Never raises but
        for a database out of reach: a failed pass (a lock not had in time) waits its turn."""
        if time.monotonic() < self._due_at:
            return False
        try:
            report = self.retention.run_once()
            FIGURES.record(report, time.time())
            FIGURES.sizes = measure(self.database)
        except UNAVAILABLE_ERRORS:
            raise
        except Exception:
            log.exception("retention_pass_failed")
            self._due_at = time.monotonic() + self.settings.retention_interval_s
            return False
        if report.dropped or report.deleted_rows or report.created:
            log.info(
                "retention_pass",
                created=[day.isoformat() for day in report.created],
                dropped=[day.isoformat() for day in report.dropped],
                dropped_rows=report.dropped_rows,
                kept_rows=report.kept_rows,
                deleted_rows=report.deleted_rows,
            )
        self._due_at = 0.0 if report.more else time.monotonic() + self.settings.retention_interval_s
        return report.more
