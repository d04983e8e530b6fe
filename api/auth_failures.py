"""Failed authentications, counted per source address: past the budget, 429 before any lookup.

Every wrong API key costs a database read, and the admin token may be guessed at will;
an address that fails `per_min` times in a minute is refused (429 with `Retry-After`)
until its budget refills, before its credential is even looked at. A credential this
process already knows (`engine.tenancy.credentials`) is still served from such an address:
clients behind one NAT keep working while a neighbour guesses.

The budget is a token bucket per address, in this process's memory: with N API processes
an address may fail up to N times the budget before each refuses it. At most
`MAX_ADDRESSES` addresses are tracked; past that the quietest are forgotten first.
Behind a proxy, the address is the client's as `X-Forwarded-For` names it, read from the
right past the proxies the operator trusts (`HOOKLINE_TRUSTED_PROXIES`); without that
setting, every client behind the proxy would share the proxy's budget.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import falcon

from engine.settings import IPNetwork

MAX_ADDRESSES = 10_000


class FailedAuth:
    """Per-address buckets of failed authentications; used on the event loop only."""

    def __init__(
        self,
        per_min: int,
        *,
        trusted_proxies: Sequence[IPNetwork] = (),
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.per_min = per_min
        self.trusted = tuple(trusted_proxies)
        self.clock = clock
        self.max_addresses = max_addresses
        # address -> (failures it may still make, when that was counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_min > 0

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it may now."""
        if not self.enabled:
            return None
        left = self._left(address)
        if left >= 1:
            return None
        return max(1, math.ceil((1 - left) * 60 / self.per_min))

    def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        if not self.enabled:
            return
        left = self._left(address)
        self._buckets[address] = (left - 1, self.clock())
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def _left(self, address: str) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return float(self.per_min)
        left, at = entry
        refilled = (self.clock() - at) * self.per_min / 60
        return min(float(self.per_min), left + refilled)

    def address(self, req: falcon.Request) -> str:
        """The client's address: the peer's, or behind trusted proxies the first address
        `X-Forwarded-For` names, from the right, that is not one of them."""
        peer = req.remote_addr or ""
        if not self.trusted or not _within(peer, self.trusted):
            return peer
        forwarded = req.get_header("X-Forwarded-For") or ""
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _within(hop, self.trusted):
                return hop
        return hops[0] if hops else peer


def _within(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == network.version and ip in network for network in networks)
