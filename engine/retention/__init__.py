"""Retention: events, deliveries and attempts removed once past their tenant's retention.

Owns the data's lifecycle. `run` is one pass (the scheduler's): on PostgreSQL,
`days` creates the daily partitions ahead and drops the days past the longest
retention; `purge` deletes in batches what a drop cannot take (a tenant kept
shorter, and on SQLite everything); `sizes` measures the tables for the gauges.
Live work (`purge.LIVE`) is never removed.
"""

from engine.retention.purge import LIVE
from engine.retention.run import Report, Retention
from engine.retention.sizes import Sizes, measure

__all__ = ["LIVE", "Report", "Retention", "Sizes", "measure"]
