"""Shared fixtures: settings, an embedded SQLite database, and, for integration
tests, a PostgreSQL database and a RabbitMQ vhost unique to this run.

Integration tests skip when PostgreSQL or RabbitMQ is down, except under `CI`,
where they fail: CI must never go green by skipping them. `--queue-type quorum`
(or `HOOKLINE_TEST_QUEUE_TYPE=quorum`) runs Hookline's processes on quorum queues;
`tox -e py` runs the integration tests once per queue type.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from engine.db.connect import bind
from engine.db.migrations import migrate
from engine.settings import Settings
from tests.factories import Clock, make_settings
from tests.services import amqp_url_for, new_database, new_vhost, queue_type


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--queue-type",
        choices=("classic", "quorum"),
        default=os.environ.get("HOOKLINE_TEST_QUEUE_TYPE", "classic"),
        help="RabbitMQ queue type of the integration tests' stacks (HOOKLINE_QUEUE_TYPE)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Read by `tests.services.queue_type`, in this process and in xdist's workers.
    os.environ["HOOKLINE_TEST_QUEUE_TYPE"] = config.getoption("--queue-type")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests start first, so a parallel run does not end with every process idle but the
    # one still in a long test. `tox -e py` runs `--dist worksteal`, which hands each test
    # process one contiguous block of this order, then lets an idle one take half of the
    # longest queue: each block starts with its share of the slow tests.
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    items[:] = _blocks(slow, fast, workers)


def _blocks(slow: list[Any], fast: list[Any], workers: int) -> list[Any]:
    """`slow` dealt round-robin to the head of `workers` blocks, filled up from `fast`.

    The blocks are sized as xdist's work-stealing scheduler cuts its first hand-out.
    """
    remaining, sizes = len(slow) + len(fast), []
    for n in range(workers, 0, -1):
        sizes.append(remaining // n)
        remaining -= sizes[-1]
    heads: list[list[Any]] = [slow[n::workers] for n in range(workers)]
    ordered, rest = [], iter(fast)
    for head, size in zip(heads, sizes, strict=True):
        ordered += head
        ordered += [next(rest) for _ in range(max(0, size - len(head)))]
    return ordered + list(rest)


def pytest_report_header(config: pytest.Config) -> str:
    return f"RabbitMQ queue type: {queue_type()}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # `tox -e py -- tests/unit/...`: tox's quorum pass finds no integration test there.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and queue_type() == "quorum":
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_settings(tmp_path: Any) -> Settings:
    return make_settings(HOOKLINE_DATA_DIR=str(tmp_path / "var"))


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Iterator[Any]:
    """A migrated SQLite database bound to the models, connected on this thread."""
    database = bind(sqlite_settings)
    migrate(database)
    database.connect(reuse_if_open=True)
    yield database
    if not database.is_closed():
        database.close()


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    with new_database() as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this run, deleted afterwards."""
    with new_vhost() as vhost:
        yield amqp_url_for(vhost)


@pytest.fixture(scope="session")
def pg_migrated(pg_url: str) -> str:
    """The run's PostgreSQL database, migrated once."""
    database = bind(make_settings(HOOKLINE_DATABASE_URL=pg_url))
    migrate(database)
    database.close_all()
    return pg_url
