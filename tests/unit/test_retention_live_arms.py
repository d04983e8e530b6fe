"""A dropped day's live work is found through partial indexes (`engine.retention.days`)."""

from __future__ import annotations

import importlib
import pkgutil
import re

from engine.db import migrations
from engine.retention import LIVE, days


def test_the_arms_cover_every_open_state_once() -> None:
    states = [state for arm in days.LIVE_ARMS for state in arm]
    assert sorted(states) == sorted(LIVE), "a live state no arm reads would be dropped"
    assert len(states) == len(set(states))


def test_each_arm_is_the_predicate_of_a_partial_index_on_delivery() -> None:
    ddl = []
    for module in pkgutil.iter_modules(migrations.__path__):
        step = importlib.import_module(f"{migrations.__name__}.{module.name}")
        ddl += [getattr(step, "DDL", ""), *getattr(step, "POSTGRES", [])]
    text = re.sub(r"\s+", " ", " ".join(ddl))
    predicates = re.findall(
        r"CREATE INDEX \w+ ON delivery \([^)]*\) WHERE ([^;\"]+?)(?:;|$| CREATE)", text
    )
    for arm in days.LIVE_ARMS:
        assert any(p.strip().startswith(days.arm_sql(arm)) for p in predicates), days.arm_sql(arm)
