"""`api.auth_failures`: a budget of failed authentications per address, refilled in time."""

from __future__ import annotations

import ipaddress

import falcon.testing

from api.auth_failures import FailedAuth
from tests.factories import Clock


def test_an_address_past_its_budget_waits_for_it_to_refill() -> None:
    clock = Clock()
    failures = FailedAuth(30, clock=clock)  # one back every 2 s
    for _ in range(30):
        assert failures.retry_after("203.0.113.7") is None
        failures.failed("203.0.113.7")

    assert failures.retry_after("203.0.113.7") == 2
    assert failures.retry_after("203.0.113.8") is None, "another address has its own"
    clock.now += 1.5
    assert failures.retry_after("203.0.113.7") == 1
    clock.now += 0.5
    assert failures.retry_after("203.0.113.7") is None
    failures.failed("203.0.113.7")
    assert failures.retry_after("203.0.113.7") == 2
    clock.now += 3600
    assert failures.retry_after("203.0.113.7") is None
    for _ in range(30):
        failures.failed("203.0.113.7")
    assert failures.retry_after("203.0.113.7") == 2, "a full budget, never more"


def test_zero_is_no_limit() -> None:
    failures = FailedAuth(0)
    for _ in range(1000):
        failures.failed("203.0.113.7")
    assert failures.retry_after("203.0.113.7") is None


def test_the_quietest_addresses_are_forgotten_past_the_bound() -> None:
    failures = FailedAuth(1, max_addresses=3, clock=Clock())
    for address in ("a", "b", "c", "a", "d"):
        failures.failed(address)

    assert failures.retry_after("b") is None, "forgotten: the least recent"
    assert [failures.retry_after(a) for a in ("a", "c", "d")] == [120, 60, 60], "a failed twice"


def request(peer: str, forwarded: str | None = None) -> falcon.Request:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return falcon.Request(falcon.testing.create_environ(remote_addr=peer, headers=headers))


def test_behind_trusted_proxies_the_client_is_the_first_untrusted_hop_from_the_right() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    failures = FailedAuth(30, trusted_proxies=proxies)

    assert failures.address(request("10.1.2.3", "198.51.100.9, 10.0.0.5")) == "198.51.100.9"
    # A client cannot pose as another by writing the header: only trusted hops are skipped.
    assert failures.address(request("10.1.2.3", "1.2.3.4, 198.51.100.9")) == "198.51.100.9"
    assert failures.address(request("203.0.113.7", "1.2.3.4")) == "203.0.113.7", "untrusted peer"
    assert failures.address(request("10.1.2.3")) == "10.1.2.3"
    assert FailedAuth(30).address(request("10.1.2.3", "1.2.3.4")) == "10.1.2.3", "none trusted"
