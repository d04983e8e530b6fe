"""`engine.deliveries.hostgate.HostGates`: a per-host limit, waiters let in in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from engine.deliveries.hostgate import HostGates, host_key


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_holders_up_to_the_limit_go_in_at_once_and_the_rest_wait() -> None:
    async def scenario() -> None:
        gates = HostGates(2)
        await gates.acquire("a")
        await gates.acquire("a")
        third = asyncio.ensure_future(gates.acquire("a"))
        await settle()

        assert not third.done()
        assert (gates.holders("a"), gates.waiting("a")) == (2, 1)
        await gates.acquire("b")  # another host is not held up
        assert gates.holders("b") == 1

        gates.release("a")
        await settle()
        assert third.done() and gates.holders("a") == 2, "the slot went to the waiter"

    asyncio.run(scenario())


def test_waiters_are_let_in_in_the_order_they_came() -> None:
    async def scenario() -> None:
        gates = HostGates(1)
        await gates.acquire("a")
        order: list[int] = []

        async def wait(n: int) -> None:
            await gates.acquire("a")
            order.append(n)

        waiters = [asyncio.ensure_future(wait(n)) for n in range(5)]
        await settle()
        for _ in range(5):
            gates.release("a")
            # Someone arriving just as a slot frees queues behind those already waiting.
            late = asyncio.ensure_future(gates.acquire("a"))
            await settle()
            assert not late.done()
            late.cancel()
            await settle()
        await asyncio.gather(*waiters)

        assert order == [0, 1, 2, 3, 4]

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_no_slot_taken() -> None:
    async def scenario() -> None:
        gates = HostGates(1)
        await gates.acquire("a")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await gates.acquire("a")

        assert gates.waiting("a") == 0
        gates.release("a")
        assert gates.holders("a") == 0
        await gates.acquire("a")  # free again, at once

    asyncio.run(scenario())


def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next() -> None:
    async def scenario() -> None:
        gates = HostGates(1)
        await gates.acquire("a")
        first = asyncio.ensure_future(gates.acquire("a"))
        second = asyncio.ensure_future(gates.acquire("a"))
        await settle()

        gates.release("a")  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it runs
        await settle()

        assert first.cancelled()
        assert second.done() and gates.holders("a") == 1
        gates.release("a")
        assert gates.holders("a") == 0

    asyncio.run(scenario())


def test_idle_hosts_are_forgotten() -> None:
    async def scenario() -> None:
        gates = HostGates(3)
        for host in ("a", "b", "c"):
            await gates.acquire(host)
            gates.release(host)

        assert gates._gates == {}

    asyncio.run(scenario())


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HostGates(0)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://127.0.0.1:8080/hook", ("http", "127.0.0.1", 8080)),
        ("https://Example.COM/a?b=c", ("https", "example.com", 443)),
        ("http://example.com/", ("http", "example.com", 80)),
        ("HTTP://example.com:80/x", ("http", "example.com", 80)),
        ("http://[::1]:9000/", ("http", "::1", 9000)),
        ("http://example.com:99999/", ("http", "example.com", 80)),
    ],
)
def test_host_key_is_what_connections_are_pooled_by(url: str, key: tuple[str, str, int]) -> None:
    assert host_key(url) == key


def test_a_waiter_that_asks_to_go_first_goes_ahead_of_those_waiting() -> None:
    async def scenario() -> None:
        gates = HostGates(1)
        await gates.acquire("a")
        order: list[str] = []

        async def wait(name: str, first: bool = False) -> None:
            await gates.acquire("a", first=first)
            order.append(name)
            gates.release("a")

        queued = [asyncio.ensure_future(wait(f"flood-{n}")) for n in range(3)]
        await settle()
        due = asyncio.ensure_future(wait("slotted", first=True))
        await settle()
        gates.release("a")
        await asyncio.gather(*queued, due)

        assert order == ["slotted", "flood-0", "flood-1", "flood-2"]

    asyncio.run(scenario())
