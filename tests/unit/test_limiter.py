"""A process's leases: requests decided in memory, leases in chunks, the limit shared."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from engine.db.models import RateLimitWindow
from engine.tenancy import ratelimit
from engine.tenancy.credentials import Principal
from engine.tenancy.limiter import NEEDS_DATABASE, Limiter
from engine.tenancy.ratelimit import INGEST, MANAGEMENT, Decision
from tests.factories import make_settings

T0 = 1_800_000_000.25
ALICE = Principal("ten_a", "key_1", frozenset())


class Statements:
    """`ratelimit.lease` counted: how many statements, and the chunks each asked for."""

    def __init__(self, lease: Callable[[Mapping[str, int], int], dict[str, int]]) -> None:
        self.lease = lease
        self.calls: list[dict[str, int]] = []

    def __call__(self, chunks: Mapping[str, int], window: int) -> dict[str, int]:
        self.calls.append(dict(chunks))
        return self.lease(chunks, window)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    spy = Statements(ratelimit.lease)
    monkeypatch.setattr(ratelimit, "lease", spy)
    return spy


def limiter(**limits: int) -> Limiter:
    env = {f"HOOKLINE_RATE_LIMIT_{name.upper()}": value for name, value in limits.items()}
    return Limiter(make_settings(**env))


def spend(process: Limiter, count: int, now: float = T0, budget: str = INGEST) -> list[Decision]:
    """`count` requests of ALICE, each decided in memory when it can be, as the middleware does."""
    decisions = []
    for _ in range(count):
        buckets = process.buckets(ALICE, budget)
        decision = process.try_consume(buckets, now)
        if decision is NEEDS_DATABASE:
            decision = process.consume(buckets, now)
        assert isinstance(decision, Decision)
        decisions.append(decision)
    return decisions


def test_consume_counts_the_key_and_the_tenant_and_refuses_over_either(sqlite_db: Any) -> None:
    process = limiter(management_per_s=2, tenant_management_per_s=3)
    second = Principal("ten_a", "key_2", frozenset())

    verdicts = [process.consume(process.buckets(ALICE, MANAGEMENT), T0) for _ in range(3)]
    other = process.consume(process.buckets(second, MANAGEMENT), T0)

    assert [v.allowed for v in verdicts if v] == [True, True, False]
    assert other is not None and not other.allowed  # the refused third counted: 3 are spent
    assert process.consume(process.buckets(ALICE, INGEST), T0).allowed  # type: ignore[union-attr]


def test_no_limit_means_no_counting(sqlite_db: Any) -> None:
    process = limiter(management_per_s=0, tenant_management_per_s=0)
    process.consume({}, T0)  # the first window's sweep

    assert process.try_consume(process.buckets(ALICE, MANAGEMENT), T0) is None
    assert process.consume(process.buckets(ALICE, MANAGEMENT), T0) is None
    assert RateLimitWindow.select().count() == 0


def test_only_a_spent_lease_or_a_due_sweep_needs_the_database(sqlite_db: Any) -> None:
    process = limiter(ingest_per_s=30, tenant_ingest_per_s=0)  # leases of one hit
    buckets = process.buckets(ALICE, INGEST)

    assert process.try_consume(buckets, T0) is NEEDS_DATABASE  # nothing leased yet
    assert process.consume(buckets, T0) == Decision(True, 30, 29, 1)
    assert process.try_consume(buckets, T0) is NEEDS_DATABASE  # that one hit is spent
    assert process.try_consume({}, T0 + 1) is NEEDS_DATABASE  # the window before is over


def test_a_busy_bucket_leases_in_chunks_and_spends_them_in_memory(
    sqlite_db: Any, statements: Statements
) -> None:
    decisions = spend(limiter(), 200)

    assert all(d.allowed for d in decisions)
    # Both 20,000/s buckets lease a thousandth of their limit at a time, together.
    assert statements.calls == [{"ingest:key:key_1": 20, "ingest:tenant:ten_a": 20}] * 10
    assert [d.remaining for d in decisions[:2]] == [19_999, 19_998]


def test_leases_follow_what_the_window_before_spent(sqlite_db: Any, statements: Statements) -> None:
    process = limiter(ingest_per_s=20_000, tenant_ingest_per_s=0)
    spend(process, 2000)
    statements.calls.clear()

    spend(process, 2000, now=T0 + 1)

    assert statements.calls == [{"ingest:key:key_1": 100}] * 20


def test_a_full_window_refuses_from_memory_until_it_ends(
    sqlite_db: Any, statements: Statements
) -> None:
    process = limiter(ingest_per_s=3, tenant_ingest_per_s=0)
    assert [d.allowed for d in spend(process, 4)] == [True, True, True, False]
    leased = len(statements.calls)

    refused = spend(process, 50)

    assert not any(d.allowed for d in refused)
    assert len(statements.calls) == leased
    assert {(d.limit, d.remaining) for d in refused} == {(3, 0)}
    assert spend(process, 1, now=T0 + 1)[0].allowed


def test_processes_sharing_the_counter_pass_the_limit_less_only_their_unspent_leases(
    sqlite_db: Any,
) -> None:
    processes = [limiter(ingest_per_s=2000, tenant_ingest_per_s=0) for _ in range(4)]
    for process, before in zip(processes, (100, 140, 260, 400), strict=True):
        spend(process, before, now=T0 - 1)  # so they lease 5, 7, 13 and 20 hits at a time now
    passed = 0

    while True:  # process n sends n + 1 requests a round, until one is refused
        answers = [d for n, p in enumerate(processes) for d in spend(p, n + 1)]
        passed += sum(d.allowed for d in answers)
        if not all(d.allowed for d in answers):
            break

    unspent = sum(lease.taken - lease.spent for p in processes for lease in p._leases.values())
    assert passed + unspent == 2000
    assert 0 < unspent <= 2000 // 20 + 4 * (2000 // 1000)


def test_threads_of_one_process_lease_a_bucket_one_at_a_time_and_pass_exactly_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counters: dict[str, int] = {}
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    def lease(chunks: Mapping[str, int], window: int) -> dict[str, int]:
        with lock:
            for bucket, size in chunks.items():
                counters[bucket] = counters.get(bucket, 0) + size
                in_flight[bucket] = in_flight.get(bucket, 0) + 1
                peak[bucket] = max(peak.get(bucket, 0), in_flight[bucket])
            answer = {bucket: counters[bucket] for bucket in chunks}
        time.sleep(0.0001)  # let the other threads run into the spent lease meanwhile
        with lock:
            for bucket in chunks:
                in_flight[bucket] -= 1
        return answer

    monkeypatch.setattr(ratelimit, "lease", lease)
    monkeypatch.setattr(ratelimit, "sweep", lambda before: 0)
    process = limiter(ingest_per_s=5000, tenant_ingest_per_s=4000)
    passed: list[int] = []
    threads = [
        threading.Thread(target=lambda: passed.append(sum(d.allowed for d in spend(process, 500))))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert sum(passed) == 4000
    assert peak == {"ingest:key:key_1": 1, "ingest:tenant:ten_a": 1}


def test_the_sweep_forgets_the_leases_of_finished_windows(sqlite_db: Any) -> None:
    process = limiter()
    spend(process, 1)

    spend(process, 1, now=T0 + 5, budget=MANAGEMENT)

    assert sorted(process._leases) == ["management:key:key_1", "management:tenant:ten_a"]


def test_a_batch_spends_its_hits_all_or_none_and_leases_at_least_what_it_lacks(
    sqlite_db: Any, statements: Statements
) -> None:
    process = limiter(ingest_per_s=1000, tenant_ingest_per_s=0)
    buckets = process.buckets(ALICE, INGEST)

    first = process.consume(buckets, T0, 300)  # more than any one chunk of a limit of 1,000

    assert first is not None and first.allowed
    assert statements.calls[-1]["ingest:key:key_1"] >= 300
    refused = process.consume(buckets, T0, 701)  # 300 + 701 is past the limit: none is spent
    assert refused is not None and not refused.allowed
    rest = process.consume(buckets, T0, 700)
    assert rest is not None and rest.allowed and rest.remaining == 0
    one_more = process.consume(buckets, T0, 1)  # the counter may pass the limit; grants never
    assert one_more is not None and not one_more.allowed
