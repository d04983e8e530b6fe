"""`engine.tenancy.credentials`: keys remembered for a TTL, forgotten on `changed()`."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from engine.tenancy.credentials import CredentialCache, CredentialGeneration, Principal
from tests.factories import Clock


@pytest.fixture
def host() -> CredentialGeneration:
    """The counter of credential changes the caches of one host read."""
    return CredentialGeneration()


def principal(key_id: str = "key_1", tenant_id: str = "ten_1") -> Principal:
    return Principal(tenant_id, key_id, frozenset({"events:write"}))


def cache_with(
    clock: Clock,
    ttl_s: float = 1.0,
    *,
    generation: CredentialGeneration | None = None,
    max_entries: int = 4096,
) -> CredentialCache:
    return CredentialCache(ttl_s, generation=generation, max_entries=max_entries, clock=clock)


def remember(cache: CredentialCache, digest: str, who: Principal) -> None:
    cache.put(digest, who, generation=cache.generation.read())


def test_a_key_is_served_from_the_cache_within_its_ttl(clock: Clock) -> None:
    cache = cache_with(clock)
    remember(cache, "d1", principal())

    clock.now += 0.99

    assert cache.get("d1") == principal()


def test_a_key_is_read_again_once_its_ttl_has_passed(clock: Clock) -> None:
    cache = cache_with(clock)
    remember(cache, "d1", principal())

    clock.now += 1.0

    assert cache.get("d1") is None


def test_changed_forgets_every_cached_key_of_the_counter_at_once(
    clock: Clock, host: CredentialGeneration
) -> None:
    cache, other = cache_with(clock, generation=host), cache_with(clock, generation=host)
    elsewhere = cache_with(clock)
    for each in (cache, other, elsewhere):
        remember(each, "d1", principal())

    host.changed()

    assert cache.get("d1") is None
    assert other.get("d1") is None
    assert elsewhere.get("d1") == principal(), "a cache reading another counter keeps its keys"


def test_a_principal_read_before_a_change_is_not_remembered(
    clock: Clock, host: CredentialGeneration
) -> None:
    cache = cache_with(clock, generation=host)
    read_at = host.read()

    host.changed()  # a revocation commits while the key's row is being read
    cache.put("d1", principal(), generation=read_at)

    assert cache.get("d1") is None


def test_a_ttl_of_zero_caches_nothing(clock: Clock) -> None:
    cache = cache_with(clock, ttl_s=0)
    remember(cache, "d1", principal())

    assert cache.get("d1") is None


def test_the_cache_holds_at_most_max_entries_dropping_the_oldest(clock: Clock) -> None:
    cache = cache_with(clock, max_entries=3)
    for n in range(4):
        remember(cache, f"d{n}", principal(f"key_{n}"))

    assert cache.get("d0") is None
    assert [cache.get(f"d{n}") for n in (1, 2, 3)] == [principal(f"key_{n}") for n in (1, 2, 3)]


def test_expired_entries_go_first_when_the_cache_is_full(clock: Clock) -> None:
    cache = cache_with(clock, max_entries=2)
    remember(cache, "old", principal("key_old"))
    clock.now += 0.5
    remember(cache, "young", principal("key_young"))
    clock.now += 0.6  # "old" has expired, "young" has not

    remember(cache, "new", principal("key_new"))

    assert cache.get("young") == principal("key_young")
    assert cache.get("new") == principal("key_new")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_forked_after_sharing_see_each_others_changes(
    clock: Clock, host: CredentialGeneration
) -> None:
    host.share_across_fork()  # what gunicorn's master does before forking workers
    cache = cache_with(clock, generation=host)
    remember(cache, "d1", principal())

    child = multiprocessing.get_context("fork").Process(target=host.changed)
    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert cache.get("d1") is None
