"""The SSRF guard, address by address.

Network safety: nothing here connects anywhere but loopback. Non-loopback
addresses are only judged (`refusal_reason`) or handed to the socket factory
with `socket.socket` replaced by a tripwire, so a refusal provably happens
before any socket exists. The live tests talk to a server on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import pickle
import socket
from collections.abc import Iterator
from typing import Any

import aiohappyeyeballs
import aiohttp
import pytest
from aiohttp import web

from engine.ssrf import (
    AddressPolicy,
    RefusedAddressError,
    check_url,
    client_host,
    guarded_socket_factory,
    parse_host_address,
    refusal_in,
    refusal_reason,
)

DEFAULT = AddressPolicy()

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this-network"),
    ("192.0.0.8", "special-purpose"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "6to4-relay"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    ("2001::1", "teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ("2001:10::1", "special-purpose"),
    ("64:ff9b:1::a00:1", "nat64-local"),
    ("::ffff:0:7f00:1", "reserved"),  # SIIT "IPv4-translated", not mapped
    ("4000::1", "reserved"),
    ("5f00::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback (IPv4-mapped 127.0.0.1)"),
    ("::ffff:7f00:1", "loopback (IPv4-mapped 127.0.0.1)"),
    ("::ffff:10.1.2.3", "private (IPv4-mapped 10.1.2.3)"),
    ("::ffff:169.254.169.254", "link-local (IPv4-mapped 169.254.169.254)"),
    ("::ffff:0.0.0.0", "unspecified (IPv4-mapped 0.0.0.0)"),
    ("::127.0.0.1", "loopback (IPv4-compatible 127.0.0.1)"),
    ("::10.0.0.1", "private (IPv4-compatible 10.0.0.1)"),
    ("::2", "this-network (IPv4-compatible 0.0.0.2)"),
    ("2002:7f00:1::1", "loopback (6to4 127.0.0.1)"),
    ("2002:a9fe:a9fe::", "link-local (6to4 169.254.169.254)"),
    ("2002:c0a8:101::1", "private (6to4 192.168.1.1)"),
    ("64:ff9b::7f00:1", "loopback (NAT64 127.0.0.1)"),
    ("64:ff9b::a9fe:a9fe", "link-local (NAT64 169.254.169.254)"),
    ("64:ff9b::6440:1", "cgnat (NAT64 100.64.0.1)"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just past 172.16/12
    "100.128.0.1",  # just past CGNAT
    "198.20.0.1",  # just past 198.18/15
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


def _tripwire(*args: Any, **kwargs: Any) -> socket.socket:
    pytest.fail(f"a socket was created: {args} {kwargs}")


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything creates a socket."""
    monkeypatch.setattr(socket, "socket", _tripwire)
    yield


def addr_info(address: str, port: int = 80) -> tuple[Any, ...]:
    if ":" in address:
        return (
            socket.AF_INET6,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            "",
            (address, port, 0, 0),
        )
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_a_non_public_address_is_refused_with_its_reason(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), DEFAULT) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_a_public_address_is_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), DEFAULT) is None


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_the_dangerous_switch_allows_every_address(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), AddressPolicy(allow_private=True)) is None


def test_an_allowed_cidr_opens_only_that_network() -> None:
    policy = AddressPolicy(allow_cidrs=(ipaddress.ip_network("10.1.0.0/16"),))
    assert refusal_reason(ipaddress.ip_address("10.1.2.3"), policy) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:10.1.2.3"), policy) is None
    assert refusal_reason(ipaddress.ip_address("10.2.0.1"), policy) == "private"
    assert refusal_reason(ipaddress.ip_address("127.0.0.1"), policy) == "loopback"


def test_an_allowed_ipv6_cidr_opens_that_network() -> None:
    policy = AddressPolicy(allow_cidrs=(ipaddress.ip_network("fd00:1::/32"),))
    assert refusal_reason(ipaddress.ip_address("fd00:1::5"), policy) is None
    assert refusal_reason(ipaddress.ip_address("fd00:2::5"), policy) == "unique-local"


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_the_socket_factory_refuses_before_making_a_socket(
    address: str, reason: str, no_sockets: None
) -> None:
    factory = guarded_socket_factory(DEFAULT)
    with pytest.raises(RefusedAddressError) as caught:
        factory(addr_info(address))
    assert caught.value.reason == reason
    assert caught.value.address == str(ipaddress.ip_address(address))
    assert address in str(caught.value) or str(ipaddress.ip_address(address)) in str(caught.value)


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%1"])
def test_the_socket_factory_ignores_a_zone_when_judging(address: str, no_sockets: None) -> None:
    with pytest.raises(RefusedAddressError, match="link-local"):
        guarded_socket_factory(DEFAULT)(addr_info(address))


@pytest.mark.parametrize("address", ["localhost", "2130706433", "/tmp/socket", ""])
def test_the_socket_factory_refuses_anything_that_is_not_an_ip(
    address: str, no_sockets: None
) -> None:
    with pytest.raises(RefusedAddressError, match="not an IP address"):
        guarded_socket_factory(DEFAULT)(addr_info(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888"])
def test_the_socket_factory_makes_an_unconnected_socket_for_a_public_address(
    address: str,
) -> None:
    sock = guarded_socket_factory(DEFAULT)(addr_info(address))
    try:
        assert sock.family == (socket.AF_INET6 if ":" in address else socket.AF_INET)
        assert sock.type == socket.SOCK_STREAM
        with pytest.raises(OSError):
            sock.getpeername()  # made, never connected
    finally:
        sock.close()


def test_a_refusal_is_a_permission_error_so_happy_eyeballs_moves_on() -> None:
    error = RefusedAddressError("10.0.0.1", "private")
    assert isinstance(error, PermissionError)
    assert isinstance(error, OSError)
    assert str(error) == "[Errno 13] refused to connect to 10.0.0.1: private"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.address, copy.reason, str(copy)) == (
        error.address,
        error.reason,
        str(error),
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("[fe80::1%eth0]", "fe80::1"),
    ],
)
def test_numeric_hosts_are_read_the_way_inet_aton_reads_them(host: str, expected: str) -> None:
    assert parse_host_address(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "0x",
        "08.0.0.1",
        "256.0.0.1",
        "1.2.3.4.5",
        "4294967296",
        "1.16777216",
        "1..2",
        "",
        "[not-an-ip]",
        "[::1",
        "7f.0.0.1",
    ],
)
def test_names_and_malformed_numbers_are_not_addresses(host: str) -> None:
    assert parse_host_address(host) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "http://example.com:8080/hooks?x=1",
        "https://8.8.8.8/hooks",
        "https://[2001:4860:4860::8888]:443/",
        "http://localhost/",  # a name: judged at connect time
    ],
)
def test_acceptable_urls_pass_the_early_check(url: str) -> None:
    assert check_url(url, DEFAULT) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://127.0.0.1:25/", "scheme"),
        ("example.com/hooks", "scheme ''"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https:///hooks", "no host"),
        ("https://:443/", "no host"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:99999/", "malformed"),
        ("http://[::1/", "malformed"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("http://127.0.0.1:8080/", "address 127.0.0.1 is loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://2130706433/", "address 127.0.0.1 is loopback"),
        ("http://017700000001/", "address 127.0.0.1 is loopback"),
        ("http://0x7f.1/", "address 127.0.0.1 is loopback"),
        ("http://127.1/", "address 127.0.0.1 is loopback"),
        ("http://[::1]/", "address ::1 is loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback (IPv4-mapped 127.0.0.1)"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://256.1.1.1/", "looks numeric"),
        ("http://example.0x1/", "looks numeric"),
        ("http://134744072/", "non-canonical spelling of 8.8.8.8"),
    ],
)
def test_unacceptable_urls_are_refused_before_any_dns(url: str, fragment: str) -> None:
    reason = check_url(url, DEFAULT)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127\u30020\u30020\u30021/", "127.0.0.1"),  # ideographic full stops
        ("http://\uff11\uff12\uff17.0.0.1/", "127.0.0.1"),  # fullwidth digits
        ("http://127\uff0e0\uff0e0\uff0e1:8080/x", "127.0.0.1"),  # fullwidth full stops
        ("http://169\u3002254\u3002169\u3002254/", "169.254.169.254"),
        ("http://\uff11\uff10.0.0.1/", "10.0.0.1"),
    ],
)
def test_a_host_with_idna_dots_is_judged_as_the_client_will_connect(url: str, address: str) -> None:
    """These passed the create-time check and were refused only at connect."""
    assert client_host(url) == address, "what aiohttp's yarl connects to"
    reason = check_url(url, DEFAULT)
    assert reason is not None and f"address {address} is" in reason
    assert f"as {address}" in reason


def test_an_internationalised_name_waits_for_connect_time_as_any_name_does() -> None:
    assert check_url("https://b\u00fccher.example/hook", DEFAULT) is None
    assert check_url("https://b\u00fccher.example/hook", AddressPolicy(allow_private=True)) is None
    reason = check_url("https://exa\u0000mple\u3002com/", DEFAULT)
    assert reason is not None


def test_the_dangerous_switch_admits_loopback_urls_but_not_odd_spellings() -> None:
    policy = AddressPolicy(allow_private=True)
    assert check_url("http://127.0.0.1:8080/", policy) is None
    assert check_url("http://[::1]:8080/", policy) is None
    assert "non-canonical" in (check_url("http://2130706433/", policy) or "")
    assert "credentials" in (check_url("http://u:p@127.0.0.1/", policy) or "")


def test_a_refusal_is_found_behind_the_client_error_that_wraps_it() -> None:
    refusal = RefusedAddressError("10.0.0.1", "private")
    wrapped = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None),
        refusal,
    )
    assert refusal_in(wrapped) == str(refusal)
    assert refusal_in(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) is None
    assert refusal_in(ValueError("refused to connect to 10.0.0.1")) is None


def test_a_name_whose_every_address_is_refused_still_reads_as_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    infos = [addr_info("::1"), addr_info("127.0.0.1"), addr_info("10.0.0.1")]

    async def connect() -> None:
        # Trip only once the loop (which makes its own socketpair) is running.
        monkeypatch.setattr(socket, "socket", _tripwire)
        await aiohappyeyeballs.start_connection(
            infos,
            happy_eyeballs_delay=0.25,
            socket_factory=guarded_socket_factory(DEFAULT),
        )

    with pytest.raises(OSError) as caught:
        asyncio.run(connect())
    # The refusals come back merged into one plain OSError, not our type.
    assert not isinstance(caught.value, RefusedAddressError)
    reason = refusal_in(caught.value)
    assert reason is not None
    for address in ("::1: loopback", "127.0.0.1: loopback", "10.0.0.1: private"):
        assert address in reason


# Live tests: loopback only.


class Receiver:
    """A loopback web server that counts the requests it receives."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")


async def _fetch_all(urls: list[str], policy: AddressPolicy) -> tuple[Receiver, list[object]]:
    """Start a receiver on 127.0.0.1:0, GET each URL through the guard, stop."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_get("/", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    receiver.port = listener.getsockname()[1]
    await web.SockSite(runner, listener).start()
    results: list[object] = []
    try:
        connector = aiohttp.TCPConnector(socket_factory=guarded_socket_factory(policy))
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for url in urls:
                try:
                    async with session.get(url.format(port=receiver.port)) as response:
                        results.append(response.status)
                except aiohttp.ClientError as exc:
                    results.append(exc)
    finally:
        await runner.cleanup()
    return receiver, results


def fetch_all(urls: list[str], policy: AddressPolicy) -> tuple[Receiver, list[object]]:
    return asyncio.run(_fetch_all(urls, policy))


def test_the_guard_refuses_loopback_by_ip_and_by_name() -> None:
    urls = [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://[::1]:{port}/",
    ]
    receiver, results = fetch_all(urls, DEFAULT)
    assert receiver.hits == 0
    for result in results:
        assert isinstance(result, aiohttp.ClientConnectorError)
        assert "refused to connect to" in str(result)
    assert isinstance(results[0], aiohttp.ClientConnectorError)
    assert isinstance(results[0].os_error, RefusedAddressError)
    assert results[0].os_error.reason == "loopback"


def test_odd_numeric_spellings_of_loopback_never_reach_the_receiver() -> None:
    urls = [
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://127.1:{port}/",
    ]
    receiver, results = fetch_all(urls, DEFAULT)
    assert receiver.hits == 0
    assert all(isinstance(result, aiohttp.ClientError) for result in results)


def test_the_dangerous_switch_lets_a_delivery_reach_loopback() -> None:
    receiver, results = fetch_all(["http://127.0.0.1:{port}/"], AddressPolicy(allow_private=True))
    assert results == [200]
    assert receiver.hits == 1


def test_an_allowed_loopback_cidr_lets_a_delivery_reach_loopback() -> None:
    policy = AddressPolicy(allow_cidrs=(ipaddress.ip_network("127.0.0.0/8"),))
    receiver, results = fetch_all(["http://127.0.0.1:{port}/"], policy)
    assert results == [200]
    assert receiver.hits == 1


def test_check_url_remembers_its_answer_per_url_and_policy() -> None:
    strict, lenient = AddressPolicy(), AddressPolicy(allow_private=True)
    url = "http://127.0.0.1:9/remembered"
    check_url.cache_clear()

    assert check_url(url, strict) is not None
    assert check_url(url, lenient) is None  # never the other policy's remembered answer
    assert check_url(url, strict) is not None
    assert check_url.cache_info().hits == 1
