"""A process's leases: decided in memory, leased in chunks refilled ahead, the limit shared."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from api.middleware import RateLimit
from engine.db.models import RateLimitWindow, db
from engine.errors import UnavailableError
from engine.tenancy import ratelimit
from engine.tenancy.credentials import Principal
from engine.tenancy.limiter import NEEDS_DATABASE, Limiter
from engine.tenancy.ratelimit import INGEST, MANAGEMENT, Decision
from engine.tenancy.refill import Refiller
from tests.factories import make_settings

T0 = 1_800_000_000.25
W = 1_800_000_000  # the window T0 is in
ALICE = Principal("ten_a", "key_1", frozenset())


class Statements:
    """`ratelimit.lease` counted: how many statements, and the chunks each asked for."""

    def __init__(self, lease: Callable[[Mapping[str, int], int], dict[str, int]]) -> None:
        self.lease = lease
        self.calls: list[dict[str, int]] = []
        self.windows: list[int] = []

    def __call__(self, chunks: Mapping[str, int], window: int) -> dict[str, int]:
        self.calls.append(dict(chunks))
        self.windows.append(window)
        return self.lease(chunks, window)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    spy = Statements(ratelimit.lease)
    monkeypatch.setattr(ratelimit, "lease", spy)
    return spy


def limiter(threaded: bool = False, **limits: int) -> Limiter:
    """A process's limiter; its refiller runs only when stepped (`spend` does), unless `threaded`.

    Stepped, it runs on the test's thread, on the connection that thread holds.
    """
    env = {f"HOOKLINE_RATE_LIMIT_{name.upper()}": value for name, value in limits.items()}
    refiller = functools.partial(Refiller, threaded=False, connection=contextlib.nullcontext)
    return Limiter(make_settings(**env), refiller=Refiller if threaded else refiller)


def request(
    process: Limiter, now: float, budget: str = INGEST, hits: int = 1
) -> tuple[Decision, bool]:
    """One request of ALICE as the middleware decides it; and whether it waited on the database."""
    buckets = process.buckets(ALICE, budget)
    decision = process.try_consume(buckets, now, hits)
    deferred = decision is NEEDS_DATABASE
    if deferred:
        decision = process.consume(buckets, now, hits)
    assert isinstance(decision, Decision)
    return decision, deferred


def spend(process: Limiter, count: int, now: float = T0, budget: str = INGEST) -> list[Decision]:
    """`count` requests of ALICE, each decided in memory when it can be, as the middleware does.

    A stepped refiller does what it was asked after each request: it keeps up.
    """
    decisions = []
    for _ in range(count):
        decisions.append(request(process, now, budget)[0])
        if not process.refiller.threaded:
            process.refiller.run_pending()
    return decisions


def settled(process: Limiter, timeout_s: float = 10.0) -> None:
    """Wait until no lease of the process is in flight (its refiller thread caught up)."""
    deadline = time.monotonic() + timeout_s
    leases = list(process._leases.values())
    while any(lease.refilling or lease.ahead_in_flight for lease in leases):
        assert time.monotonic() < deadline, "the refiller did not catch up"
        time.sleep(0.0005)


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


def test_a_limit_leased_one_hit_at_a_time_is_never_leased_ahead(
    sqlite_db: Any, statements: Statements
) -> None:
    process = limiter(ingest_per_s=30, tenant_ingest_per_s=0)  # leases of one hit
    buckets = process.buckets(ALICE, INGEST)

    assert process.try_consume(buckets, T0) is NEEDS_DATABASE  # nothing leased yet
    assert process.consume(buckets, T0) == Decision(True, 30, 29, 1)
    process.refiller.run_pending()
    assert process.try_consume(buckets, W + 0.99) is NEEDS_DATABASE  # that one hit is spent
    assert process.consume(buckets, W + 0.99) == Decision(True, 30, 28, 1)
    process.refiller.run_pending()
    # Each hit leased by the request that spends it, none in the background: the limit is exact.
    assert statements.calls == [{"ingest:key:key_1": 1}] * 2


def test_a_busy_bucket_leases_in_chunks_topped_up_in_the_background(
    sqlite_db: Any, statements: Statements
) -> None:
    process = limiter()
    answers = []
    for _ in range(200):
        answers.append(request(process, T0))
        process.refiller.run_pending()

    assert [deferred for _, deferred in answers] == [True] + [False] * 199
    decisions = [decision for decision, _ in answers]
    assert all(d.allowed for d in decisions)
    # Both 20,000/s buckets lease a thousandth of their limit, together; once fewer than half
    # of it are left, the refiller tops the lease up to a whole chunk again (20 - 9 hits).
    assert (
        statements.calls
        == [{"ingest:key:key_1": 20, "ingest:tenant:ten_a": 20}]
        + [{"ingest:key:key_1": 11, "ingest:tenant:ten_a": 11}] * 18
    )
    assert [d.remaining for d in decisions[:2]] == [19_999, 19_998]


def test_leases_follow_what_the_window_before_spent(sqlite_db: Any, statements: Statements) -> None:
    process = limiter(ingest_per_s=20_000, tenant_ingest_per_s=0)
    spend(process, 2000)
    statements.calls.clear()

    spend(process, 2000, now=T0 + 1)

    # A chunk is 1/20 of last window's 2,000; topped up from under half of it (100 - 49).
    assert statements.calls == [{"ingest:key:key_1": 100}] + [{"ingest:key:key_1": 51}] * 39


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
    settings = make_settings(
        HOOKLINE_RATE_LIMIT_INGEST_PER_S=5000, HOOKLINE_RATE_LIMIT_TENANT_INGEST_PER_S=4000
    )
    # Refilled by its thread too, with no database to connect to.
    refiller = functools.partial(Refiller, connection=contextlib.nullcontext)
    process = Limiter(settings, refiller=refiller)
    passed: list[int] = []
    threads = [
        threading.Thread(target=lambda: passed.append(sum(d.allowed for d in spend(process, 500))))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    settled(process)
    process.close()

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


def stream(process: Limiter, start: float, count: int, step_s: float = 0.001) -> list[float]:
    """`count` requests of ALICE `step_s` apart from `start`; when each that waited was made.

    A stepped refiller does what it was asked after each request; a thread is waited for.
    """
    waited = []
    for index in range(count):
        now = start + index * step_s
        decision, deferred = request(process, now)
        assert decision.allowed
        if deferred:
            waited.append(now)
        if process.refiller.threaded:
            settled(process)
        else:
            process.refiller.run_pending()
    return waited


def test_a_steady_stream_waits_on_the_database_only_for_its_first_lease(sqlite_db: Any) -> None:
    process = limiter()

    waited = stream(process, W + 0.5, 2500)  # 1,000 a second, across three windows

    # Refilled in the background, the next window leased ahead, the sweep on the refiller.
    assert waited == [W + 0.5]
    windows = {row.window_start for row in RateLimitWindow.select()}
    assert windows == {W + 1, W + 2, W + 3}  # W swept; W + 3 leased ahead of its first request


def test_a_steady_stream_is_kept_up_with_by_the_refillers_thread(sqlite_db: Any) -> None:
    process = limiter(threaded=True)
    try:
        waited = stream(process, W + 0.85, 300)

        assert waited == [W + 0.85]
        assert process.refiller.alive()
    finally:
        process.close()


def busy_until_the_windows_end(statements: Statements) -> Limiter:
    """A process whose key spent 2,001 hits in W, the last in its last 1/20 s (counted since)."""
    process = limiter(ingest_per_s=20_000, tenant_ingest_per_s=0)
    spend(process, 2000)
    statements.calls.clear()
    statements.windows.clear()
    spend(process, 1, now=W + 0.96)
    return process


def test_the_next_window_is_leased_ahead_and_adopted_when_it_turns(
    sqlite_db: Any, statements: Statements
) -> None:
    process = busy_until_the_windows_end(statements)
    buckets = process.buckets(ALICE, INGEST)

    ahead = [c for c, w in zip(statements.calls, statements.windows, strict=True) if w == W + 1]
    assert ahead == [{"ingest:key:key_1": 100}]  # 1/20 of what this window spent
    assert RateLimitWindow.get(RateLimitWindow.window_start == W + 1).hits == 100
    assert process.try_consume(buckets, W + 1.01) == Decision(True, 20_000, 19_999, 1)
    assert process._leases["ingest:key:key_1"].previous == 2001


def test_a_window_leased_ahead_and_never_used_is_stranded(
    sqlite_db: Any, statements: Statements
) -> None:
    process = busy_until_the_windows_end(statements)  # W + 1 is leased ahead
    buckets = process.buckets(ALICE, INGEST)
    statements.calls.clear()

    skipped = process.try_consume(buckets, W + 2.5)  # nothing was leased for W + 2

    assert skipped is NEEDS_DATABASE
    assert process.consume(buckets, W + 2.5) == Decision(True, 20_000, 19_999, 1)
    assert statements.calls == [{"ingest:key:key_1": 20}]  # afresh: W + 1 spent nothing
    assert RateLimitWindow.get(RateLimitWindow.window_start == W + 1).hits == 100  # under-used


def test_the_sweep_runs_on_the_refiller_and_never_defers_a_request(sqlite_db: Any) -> None:
    process = limiter()
    buckets = process.buckets(ALICE, INGEST)
    spend(process, 50, now=W + 0.97)  # the first sweep, and W + 1 leased ahead
    ratelimit.lease({"finished": 5}, W - 3)

    decision = process.try_consume(buckets, W + 1.5)  # W - 3 is due to be swept

    assert isinstance(decision, Decision) and decision.allowed
    assert RateLimitWindow.select().where(RateLimitWindow.window_start == W - 3).exists()
    process.refiller.run_pending()
    assert {row.window_start for row in RateLimitWindow.select()} == {W, W + 1}


def test_processes_racing_on_one_database_never_pass_more_than_the_limit_in_a_window(
    sqlite_db: Any,
) -> None:
    limit = 2000
    processes = [
        limiter(threaded=True, ingest_per_s=limit, tenant_ingest_per_s=0) for _ in range(4)
    ]
    passed: list[int] = []

    def run(process: Limiter, now: float) -> None:
        try:
            passed.append(sum(d.allowed for d in spend(process, 700, now=now)))
        finally:
            db.close()  # this thread's connection

    try:
        # The first window's last 1/20 s, so each leases the next ahead; then the next.
        for now in (W + 0.96, W + 1.5):
            passed.clear()
            threads = [threading.Thread(target=run, args=(p, now)) for p in processes * 2]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            for process in processes:
                settled(process)

            leases = [lease for p in processes for lease in p._leases.values()]
            assert all(lease.window == int(now) for lease in leases)
            assert sum(lease.taken for lease in leases) == limit  # the counter went past it
            unspent = sum(lease.taken - lease.spent for lease in leases)
            assert sum(passed) == limit - unspent
            assert unspent <= limit // 20 + 4 * (limit // 1000)
    finally:
        for process in processes:
            process.close()


def test_a_refill_that_fails_is_logged_and_its_bucket_leases_the_blocking_way(
    sqlite_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease, leased_on = ratelimit.lease, []

    def flaky(chunks: Mapping[str, int], window: int) -> dict[str, int]:
        leased_on.append(threading.current_thread().name)
        if leased_on[-1] == "rate-limit-refill" and leased_on.count(leased_on[-1]) == 1:
            raise UnavailableError("the database went away")
        return lease(chunks, window)

    monkeypatch.setattr(ratelimit, "lease", flaky)
    process = limiter(threaded=True)
    try:
        with structlog.testing.capture_logs() as logged:
            waited = stream(process, T0, 60, step_s=0)

        # 20 hits, then a refill from 9 left that fails: the lease runs dry and the 21st
        # request leases 20 itself; then the thread tops it up again at each 9 left.
        assert waited == [T0, T0]
        assert (
            leased_on
            == ["MainThread", "rate-limit-refill", "MainThread"] + ["rate-limit-refill"] * 3
        )
        warnings = [e for e in logged if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == ["rate_limit_refill_failed"]
        assert warnings[0]["error"] == "UnavailableError: the database went away"
        assert process.refiller.alive()
    finally:
        process.close()


def test_a_refiller_without_a_connection_lives_on_and_closes(sqlite_db: Any) -> None:
    def unreachable() -> contextlib.AbstractContextManager[None]:
        raise UnavailableError("no connection")

    process = Limiter(make_settings(), refiller=functools.partial(Refiller, connection=unreachable))
    with structlog.testing.capture_logs() as logged:
        waited = stream(process, T0, 60, step_s=0)

    assert len(waited) == 3  # every lease the blocking way: each 20 hits
    assert process.refiller.alive()
    assert {e["event"] for e in logged} == {"rate_limit_refill_failed"}

    process.close()

    assert not process.refiller.alive()
    assert all(d.allowed for d in spend(process, 30))  # what is asked now fails at once


def test_a_thread_without_a_connection_leases_on_one_of_its_own_and_gives_it_back(
    sqlite_db: Any,
) -> None:
    # The API calls `consume` holding no connection (a thread waiting on the refiller's
    # lease while it held one could starve the refiller of the pool's last connection).
    one = limiter(ingest_per_s=1000)
    found: dict[str, Any] = {}

    def on_a_bare_thread() -> None:
        found["closed_before"] = db.is_closed()
        found["decision"] = one.consume(one.buckets(ALICE, INGEST), T0)
        found["closed_after"] = db.is_closed()

    thread = threading.Thread(target=on_a_bare_thread)
    thread.start()
    thread.join(10)

    assert found["closed_before"] is True
    assert found["decision"].allowed
    assert found["closed_after"] is True, "the connection it opened went back"
    assert RateLimitWindow.select().count() >= 1, "the lease was written"
    assert not sqlite_db.is_closed(), "a thread's open connection is left alone"


def test_the_middleware_leases_without_holding_a_connection_while_it_waits() -> None:
    calls: list[dict[str, Any]] = []

    class Offload:
        async def run(self, fn: Any, *args: Any, uses_database: bool = True) -> Any:
            calls.append({"fn": getattr(fn, "__name__", ""), "uses_database": uses_database})
            return Decision(True, 10, 9, 1)

    one = limiter(ingest_per_s=1000)  # nothing leased yet: the request must lease
    middleware = RateLimit(one, clock=lambda: T0, offload=Offload())  # type: ignore[arg-type]
    req = SimpleNamespace(method="POST", context=SimpleNamespace(principal=ALICE))
    resource = SimpleNamespace(ingest_methods=("POST",))

    asyncio.run(middleware.spend(req, resource, 1))  # type: ignore[arg-type]

    assert calls == [{"fn": "consume", "uses_database": False}]
