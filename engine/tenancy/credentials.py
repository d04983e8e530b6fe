"""Who is calling, and authenticated API keys remembered briefly so a busy key costs no query.

A `CredentialCache` keeps each authenticated key's principal for `ttl_s`
(one second by default, `HOOKLINE_CREDENTIAL_CACHE_TTL_S`) in the process,
keyed by the key's digest, never its plaintext: reading the key's row on
every request was a large share of the API's CPU
(ops/bench/NOTES.md#credential-cache). What that costs, and what it does not:

- Revoking a key, changing a tenant's rate limits, or suspending, resuming or deleting
  a tenant, through Hookline (`engine.tenancy.keys.revoke_key`,
  `engine.tenancy.tenants.update_tenant`, `engine.lifecycle.tenants`) calls
  `changed()` on the cache's `CredentialGeneration`, which empties every cache
  reading that counter at once. The API's composition root builds one counter
  per process; under gunicorn the master builds it and `share_across_fork` lets
  every worker forked afterwards read and bump the same memory.
- Any other change, a revocation on another host or a row edited by hand in
  the database, is seen within `ttl_s` at most: an entry is never used past it.
- Unknown and revoked keys are never remembered as principals, so a new key works at once.
  What is remembered of them is a key *prefix* (its first `PREFIX_CHARS` characters) that
  no live key has, for `UNKNOWN_TTL_S`: the same wrong key, or guesses that vary its tail,
  cost one query and then none. A key issued through Hookline empties it (`changed()`);
  one issued on another host or by `hookline tenants create` has a random prefix, which
  nobody presented before it existed. The cache holds at most `max_entries` keys and as
  many prefixes, the oldest going first.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_COUNTER_BYTES = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one credential, with some scopes."""

    tenant_id: str
    credential_id: str
    scopes: frozenset[str]
    # The tenant's overrides of the rate-limit settings, read with the credential.
    rate_limits: Mapping[str, int] | None = field(default=None, compare=False, hash=False)
    # The tenant's state (`engine.tenancy.states`): only an active tenant's requests pass.
    tenant_status: str = field(default="active", compare=False, hash=False)
    # A JWT's `sub`, for the audit log; None for an API key.
    subject: str | None = field(default=None, compare=False, hash=False)

    @property
    def kind(self) -> str:
        """The kind of credential: `api_key`, `jwt` (a local key's or an identity provider's)
        or `oauth_client` (an access token of Hookline's own token endpoint)."""
        if self.credential_id.startswith(("jwt_", "oidc_")):
            return "jwt"
        return "oauth_client" if self.credential_id.startswith("oac_") else "api_key"


class CredentialGeneration:
    """A counter of credential changes; processes forked after `share_across_fork` share it."""

    def __init__(self) -> None:
        self._memory: mmap.mmap | None = None
        self._local = 0

    def share_across_fork(self) -> None:
        """Let every process forked from now on see the others' `changed()` at once."""
        # An anonymous MAP_SHARED mapping: children forked after this see one memory.
        if self._memory is None:
            self._memory = mmap.mmap(-1, _COUNTER_BYTES)

    def read(self) -> int:
        """The counter; read it before the database, hand it to `CredentialCache.put`."""
        memory = self._memory
        if memory is None:
            return self._local
        return int.from_bytes(memory[:_COUNTER_BYTES], "little")

    def changed(self) -> None:
        """Forget every principal cached against this counter; call after the change commits."""
        # Racing bumps may both write n + 1: either write still moves the counter
        # off n after both changes were committed, which is all a reader needs.
        value = (self.read() + 1) % (1 << 63)
        memory = self._memory
        if memory is None:
            self._local = value
        else:
            memory[:_COUNTER_BYTES] = value.to_bytes(_COUNTER_BYTES, "little")


# How long a prefix no live key has is remembered as unknown.
UNKNOWN_TTL_S = 30.0


class CredentialCache:
    """Principals by API-key digest, each used for `ttl_s` at most, and key prefixes that
    no live key has; thread-safe."""

    def __init__(
        self,
        ttl_s: float,
        *,
        generation: CredentialGeneration | None = None,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        # The counter whose `changed()` empties this cache; its own when none is given.
        self.generation = generation or CredentialGeneration()
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}  # prefix -> until when it is known unknown
        self._seen = self.generation.read()
        self._lock = threading.Lock()

    def _current(self) -> bool:
        """Whether nothing changed since the entries were read; if something did, forget them."""
        generation = self.generation.read()
        if generation == self._seen:
            return True
        with self._lock:
            self._entries.clear()
            self._unknown.clear()
            self._seen = generation
        return False

    def unknown(self, prefix: str) -> bool:
        """Whether no live key had this prefix when last read, within `UNKNOWN_TTL_S`."""
        if not self._current():
            return False
        until = self._unknown.get(prefix)
        if until is None:
            return False
        if self.clock() >= until:
            self._unknown.pop(prefix, None)
            return False
        return True

    def put_unknown(self, prefix: str, *, generation: int) -> None:
        """Remember that no live key had this prefix, read while the counter stood at
        `generation`; nothing is remembered when `ttl_s` is 0 (every request reads)."""
        if self.ttl_s <= 0:
            return
        self._current()  # forget what a change since the last read made stale
        with self._lock:
            if generation != self.generation.read() or generation != self._seen:
                return
            if len(self._unknown) >= self.max_entries:
                del self._unknown[next(iter(self._unknown))]  # the oldest
            self._unknown[prefix] = self.clock() + UNKNOWN_TTL_S

    def get(self, digest: str) -> Principal | None:
        """The principal cached for a key digest, or None when absent, expired or outdated."""
        if not self._current():
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires_at, principal = entry
        if self.clock() >= expires_at:
            self._entries.pop(digest, None)
            return None
        return principal

    def put(self, digest: str, principal: Principal, *, generation: int) -> None:
        """Remember a principal read while the counter stood at `generation`.

        A principal read before a `changed()` is dropped: it may be the old one.
        """
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self.generation.read() or generation != self._seen:
                return
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[digest] = (self.clock() + self.ttl_s, principal)

    def _evict(self) -> None:
        now = self.clock()
        expired = [digest for digest, (until, _) in self._entries.items() if until <= now]
        for digest in expired:
            del self._entries[digest]
        if len(self._entries) >= self.max_entries:
            # Insertion order: the first key is the one cached longest ago.
            del self._entries[next(iter(self._entries))]
