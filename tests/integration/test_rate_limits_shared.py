"""Limits and revocations hold across every process of a real `hookline api` (4 gunicorn workers).

A burst of concurrent requests from many threads, each on its own connection,
is spread by the kernel over the workers; if each worker counted on its own, a
limit of 20/s would let up to 80 through. The burst is started just after a
second boundary, so normally it fits in one fixed window and exactly the limit
passes. If a slow machine stretches it over a boundary, the bound is the limit
times the windows it touched (a fixed window refills at each boundary), which
still catches per-process counting.

Each process leases hits from the shared counter in chunks, refilled in the
background, so a busy bucket costs a statement per half chunk or so, not per
request: a statement-level trigger counts them on the counter's table.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.factories import ADMIN_TOKEN, event_body, eventually
from tests.integration.conftest import Api, Processes, free_port, stack_env

pytestmark = pytest.mark.integration

LIMIT = 20
WORKERS = 4
BURST = 60
ENDPOINTS = "/v1/endpoints"
EVENTS = 200
# A thousandth of the default ingest limit (20,000/s): each fresh lease's hits.
DEFAULT_LEASE = 20
_COUNTING = """
CREATE TABLE rate_limit_statements (at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION count_rate_limit_statement() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO rate_limit_statements DEFAULT VALUES; RETURN NULL; END $$;
CREATE TRIGGER rate_limit_statements AFTER INSERT ON rate_limit
  FOR EACH STATEMENT EXECUTE FUNCTION count_rate_limit_statement();
"""
_NOT_COUNTING = """
DROP TRIGGER rate_limit_statements ON rate_limit;
DROP FUNCTION count_rate_limit_statement();
DROP TABLE rate_limit_statements;
"""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    started: float
    ended: float


@pytest.fixture(scope="module")
def api(pg_migrated: str, amqp_url: str, tmp_path_factory: Any) -> Iterator[Api]:
    """`hookline api` alone, 4 workers, 20 management requests per second per key."""
    port = free_port()
    env = stack_env(
        pg_migrated,
        amqp_url,
        HOOKLINE_BIND=f"127.0.0.1:{port}",
        HOOKLINE_API_WORKERS=str(WORKERS),
        # 4 x 8 pooled connections at most: PostgreSQL is shared with the other stacks.
        HOOKLINE_API_THREADS="8",
        HOOKLINE_DB_MAX_CONNECTIONS="8",
        HOOKLINE_RATE_LIMIT_MANAGEMENT_PER_S=str(LIMIT),
        HOOKLINE_RATE_LIMIT_TENANT_MANAGEMENT_PER_S="0",
    )
    processes = Processes(env, tmp_path_factory.mktemp("rate-limit-logs"))
    master = processes.start("api")
    running = Api(f"http://127.0.0.1:{port}")
    try:
        running.wait_healthy()
        eventually(lambda: len(children(master.pid)) == WORKERS)
        yield running
    finally:
        processes.stop_all()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def at_once(calls: list[Callable[[], Answer]], start_at: float) -> list[Answer]:
    """Run every call on its own thread, all released at `start_at` (a Unix time)."""
    answers: list[Answer | None] = [None] * len(calls)

    def run(index: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


@contextlib.contextmanager
def counting_statements(pg_url: str) -> Iterator[Callable[[], int]]:
    """Count the statements that write the rate-limit counters while inside."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        connection.autocommit = True
        cursor = connection.cursor()
        cursor.execute(_COUNTING)

        def count() -> int:
            cursor.execute("SELECT count(*) FROM rate_limit_statements")
            return int(cursor.fetchone()[0])

        try:
            yield count
        finally:
            cursor.execute(_NOT_COUNTING)


def post_event(api: Api, key: str) -> Callable[[], Answer]:
    def call() -> Answer:
        started = time.time()
        status, _ = api.call("POST", "/v1/events", event_body(), key=key)
        return Answer(status, dict(api.last_headers), started, time.time())

    return call


def get(api: Api, key: str) -> Callable[[], Answer]:
    def call() -> Answer:
        started = time.time()
        status, _ = api.call("GET", ENDPOINTS, key=key)
        return Answer(status, dict(api.last_headers), started, time.time())

    return call


def next_second() -> float:
    """Just after the next whole second, with time to spare for starting the threads."""
    return math.floor(time.time()) + 1.02


def windows_touched(answers: list[Answer]) -> int:
    return (
        math.floor(max(a.ended for a in answers)) - math.floor(min(a.started for a in answers)) + 1
    )


def test_a_per_key_limit_holds_across_four_api_processes_and_spares_other_tenants(
    api: Api,
) -> None:
    hammering, bystander = api.tenant("hammering"), api.tenant("bystander")
    calls = [get(api, hammering) for _ in range(BURST)] + [get(api, bystander) for _ in range(10)]

    answers = at_once(calls, next_second())

    mine, theirs = answers[:BURST], answers[BURST:]
    passed = sum(1 for a in mine if a.status == 200)
    refused = [a for a in mine if a.status == 429]
    windows = windows_touched(mine)
    assert passed + len(refused) == BURST, [a.status for a in mine]
    assert passed <= LIMIT * windows, (passed, windows)
    if windows == 1:
        assert passed == LIMIT
    assert refused, "nothing was refused: each process counted on its own"
    assert [a.status for a in theirs] == [200] * 10
    for answer in refused:
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["ratelimit-limit"] == str(LIMIT)
        assert answer.headers["ratelimit-remaining"] == "0"
    assert {a.headers["ratelimit-limit"] for a in mine if a.status == 200} == {str(LIMIT)}


def test_a_revoked_key_is_refused_by_every_api_process_at_once(api: Api) -> None:
    owner = api.tenant("revoking")
    status, created = api.call("POST", "/v1/keys", {"scopes": ["endpoints:read"]}, key=owner)
    assert status == 201, created
    key = created["api_key"]
    warm = at_once([get(api, key) for _ in range(12)], time.time())
    assert [a.status for a in warm] == [200] * 12

    status, _ = api.call("DELETE", f"/v1/keys/{created['id']}", key=owner)
    after = at_once([get(api, key) for _ in range(16)], time.time())

    assert status == 204
    assert [a.status for a in after] == [401] * 16


def test_the_admin_sets_a_tenants_limit_for_every_process(api: Api) -> None:
    status, tenant = api.call("POST", "/v1/tenants", {"name": "throttled"}, key=ADMIN_TOKEN)
    assert status == 201, tenant
    status, _ = api.call(
        "PATCH",
        f"/v1/tenants/{tenant['id']}",
        {"rate_limits": {"management_per_s": 5}},
        key=ADMIN_TOKEN,
    )
    assert status == 200

    answers = at_once([get(api, tenant["api_key"]) for _ in range(30)], next_second())

    passed = sum(1 for a in answers if a.status == 200)
    assert passed <= 5 * windows_touched(answers)
    assert {a.status for a in answers} == {200, 429}
    assert {a.headers["ratelimit-limit"] for a in answers} == {"5"}


def test_ingest_within_the_limits_costs_a_statement_a_lease_not_a_request(
    api: Api, pg_migrated: str
) -> None:
    key = api.tenant("ingesting")
    calls = [post_event(api, key) for _ in range(EVENTS)]

    with counting_statements(pg_migrated) as statements, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda call: call(), calls))
        counted = statements()

    assert [a.status for a in answers] == [202] * EVENTS
    # The key's and the tenant's buckets lease together, in each process afresh in each
    # window: 20 hits, then topped up to 20 from under 10 left (11 hits or more a statement),
    # plus per process and window the lease left unspent and the next window's leased ahead.
    top_up = DEFAULT_LEASE // 2 + 1
    assert counted <= EVENTS // top_up + 2 * WORKERS * windows_touched(answers), counted
