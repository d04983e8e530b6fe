"""The SSRF guard: refuse to connect to loopback, private and other non-public hosts.

The check that matters runs at connect time, inside aiohttp: the socket factory
handed to `TCPConnector(socket_factory=...)` sees the exact address about to be
connected (IP literal or resolved name, every address of a name, after any DNS
rebinding) and refuses before a socket exists. `check_url` is the early, clearer
check at registration and before each attempt; it needs no DNS.

Addresses that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
IPv4-compatible `::a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`) are judged
by the IPv4 address they lead to. Teredo is refused outright.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yarl
from aiohttp import AddrInfoType, SocketFactoryType

from engine.errors import EngineError

__all__ = [
    "AddressPolicy",
    "IPAddress",
    "RefusedAddressError",
    "check_url",
    "guarded_socket_factory",
    "parse_host_address",
    "refusal_in",
    "refusal_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})

# First match wins, so narrow ranges come before the ranges that contain them.
_V4_REFUSED = tuple(
    (ipaddress.IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/32", "unspecified"),
        ("255.255.255.255/32", "broadcast"),
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),  # includes 169.254.169.254, cloud metadata
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "special-purpose"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4-relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_REFUSED = tuple(
    (ipaddress.IPv6Network(network), reason)
    for network, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "nat64-local"),
        # The rest of ::/8, once mapped, compatible and NAT64 are unwrapped.
        ("::/8", "reserved"),
        ("100::/64", "discard-only"),
        ("2001::/32", "teredo"),
        ("2001::/23", "special-purpose"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_COMPATIBLE = ipaddress.IPv6Network("::/96")
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# inet_aton parts: hex with at least one digit, octal with a leading 0, or decimal.
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*", re.ASCII)
# WHATWG's "ends in a number": such a host is an IPv4 address or nothing.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*", re.ASCII)
_REFUSAL_PREFIX = "refused to connect to"
_URL_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public addresses deliveries may reach; by default none."""

    allow_private: bool = False  # dangerous: lets deliveries reach every address
    allow_cidrs: tuple[IPNetwork, ...] = ()  # networks allowed despite being non-public


class RefusedAddressError(EngineError, PermissionError):
    """A connection to a non-public address was refused by the SSRF guard."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"{_REFUSAL_PREFIX} {address}: {reason}")
        self.address = address
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.address, self.reason))


def refusal_reason(ip: IPAddress, policy: AddressPolicy) -> str | None:
    """Return why `ip` may not be connected to under `policy`, or None if it may."""
    if policy.allow_private:
        return None
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    judged = [ip] if embedded is None else [ip, embedded[0]]
    if any(address in network for address in judged for network in policy.allow_cidrs):
        return None
    if embedded is not None:
        v4, kind = embedded
        reason = _v4_reason(v4)
        return None if reason is None else f"{reason} ({kind} {v4})"
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    return _v6_reason(ip)


def parse_host_address(host: str) -> IPAddress | None:
    """Return the IP address a URL host spells, however it spells it; None for a name.

    IPv4 is read the way C's `inet_aton` reads it (`2130706433`, `0x7f.1`,
    `127.1`, `0177.0.0.1` are all 127.0.0.1); IPv6 may be bracketed and carry
    a zone (`[fe80::1%eth0]`), which is dropped. A single trailing dot is
    ignored, erring towards reading the host as an address.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return _inet_aton(text.removesuffix("."))


# What lets an operator deliver to a refused address, for the messages that refuse one.
ALLOW_HINT = (
    "an operator can allow it with HOOKLINE_ALLOWED_CIDRS (for example 127.0.0.0/8) or,"
    " in development only, HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS=true"
)
REFUSED_ADDRESS_PREFIX = "address "


@functools.lru_cache(maxsize=4096)
def check_url(url: str, policy: AddressPolicy) -> str | None:
    """Return why a delivery URL is unacceptable before any DNS lookup, or None.

    A pure function of its arguments, remembered for the last 4,096 URLs: every
    attempt asks it, mostly about the same few endpoints.
    """
    if _URL_FORBIDDEN_CHARS.search(url):
        return "URL contains whitespace, control characters or a backslash"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "URL is malformed"
    if parts.scheme not in ALLOWED_SCHEMES:
        return f"scheme {parts.scheme!r} is not http or https"
    if "@" in parts.netloc:
        return "URL carries credentials (userinfo before @)"
    host = parts.hostname
    if not host:
        return "URL has no host"
    if port == 0:
        return "port 0 is not a port to deliver to"
    if host.isascii():
        return _host_reason(host, policy)
    # The client connects to the host as yarl writes it (IDNA, UTS 46): `127。0。0。1` and
    # fullwidth digits are 127.0.0.1 there, so they are judged as that, now.
    written = client_host(url)
    if written is None:
        return f"host {host} is not a valid internationalised domain name"
    reason = _host_reason(written, policy)
    return None if reason is None else f"{reason} (the client reads host {host} as {written})"


def client_host(url: str) -> str | None:
    """The host the HTTP client connects to for `url` (yarl's IDNA form); None if it has none."""
    try:
        return yarl.URL(url).raw_host
    except (ValueError, UnicodeError):
        return None


def guarded_socket_factory(policy: AddressPolicy) -> SocketFactoryType:
    """Return a `TCPConnector(socket_factory=...)` refusing what `policy` refuses.

    The returned callable raises `RefusedAddressError` (an `OSError`, so
    aiohappyeyeballs moves on to the name's next address) before creating a
    socket; aiohttp then raises `ClientConnectorError` if no address is left.
    """

    def guarded_socket(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise RefusedAddressError(address, "not an IP address") from None
        reason = refusal_reason(ip, policy)
        if reason is not None:
            raise RefusedAddressError(str(ip), reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return guarded_socket


def refusal_in(exc: BaseException) -> str | None:
    """Return the guard's refusal message behind a client error, or None.

    When every address of a name is refused, aiohappyeyeballs may merge the
    refusals into one plain `OSError(EACCES, "Multiple exceptions: ...")`,
    which loses the type; the message this module wrote is still there.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 32:  # a bound, in case of a cycle
        inner = getattr(current, "os_error", None)
        chain += [inner, current] if isinstance(inner, BaseException) else [current]
        current = current.__cause__ or current.__context__
    refusals = [error for error in chain if isinstance(error, RefusedAddressError)]
    merged = [
        error
        for error in chain
        if isinstance(error, OSError)
        and error.errno == errno.EACCES
        and _REFUSAL_PREFIX in str(error)
    ]
    return str((refusals or merged)[0]) if refusals or merged else None


def _host_reason(host: str, policy: AddressPolicy) -> str | None:
    """Judge a URL's host when it is numeric; names wait for connect time."""
    ip = parse_host_address(host)
    if ip is None:
        last_label = host.removesuffix(".").rsplit(".", 1)[-1]
        if ":" in host or _NUMERIC_LABEL.fullmatch(last_label):
            return f"host {host} looks numeric but is not a valid IP address"
        return None
    reason = refusal_reason(ip, policy)
    if reason is not None:
        return f"{REFUSED_ADDRESS_PREFIX}{ip} is {reason}"
    if isinstance(ip, ipaddress.IPv4Address) and host != str(ip):
        # aiohttp refuses these spellings itself; say so now, not at delivery.
        return f"host {host} is a non-canonical spelling of {ip}; write {ip}"
    return None


def _embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[ipaddress.IPv4Address, str] | None:
    """Return the IPv4 address an IPv6 address leads to, with the embedding's name."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    low_32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V6_NAT64:
        return low_32, "NAT64"
    if ip in _V6_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return low_32, "IPv4-compatible"
    return None


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    """Name the special-purpose range an IPv4 address is in, if any."""
    for network, reason in _V4_REFUSED:
        if ip in network:
            return reason
    # Belt and braces: anything the stdlib knows to be non-global.
    return None if ip.is_global and not ip.is_multicast else "not globally routable"


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    """Name the special-purpose range an IPv6 address is in, if any."""
    for network, reason in _V6_REFUSED:
        if ip in network:
            return reason
    if ip not in _V6_GLOBAL_UNICAST:
        return "reserved"
    return None if ip.is_global and not ip.is_multicast else "not globally routable"


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """Read dotted IPv4 with 1-4 hex, octal or decimal parts, like C's inet_aton."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    # The length cap keeps int() away from absurd digit strings.
    if not all(len(p) <= 64 and _INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    values = [_inet_aton_part(part) for part in parts]
    *head, last = values
    # The last part fills every byte the earlier parts leave.
    if any(value > 255 for value in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _inet_aton_part(part: str) -> int:
    """Read one inet_aton part: `0x` hex, leading-0 octal, or decimal."""
    if part[:2].lower() == "0x":
        return int(part, 16)  # int() skips the 0x itself
    if part.startswith("0"):
        return int(part, 8)
    return int(part, 10)
