"""Prefixed, time-sortable identifiers (`ep_01J…`): a ULID behind a type prefix.

A ULID is 128 bits: a 48-bit Unix time in milliseconds followed by 80 random
bits, written as 26 characters of Crockford base32. Equal-length strings in
that alphabet sort in the order of their bits, so ids sort by creation time.
Within one millisecond this process increments the random part instead of
drawing a new one, so ids made by one process also sort in creation order.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType

from engine.errors import MalformedError

__all__ = [
    "ALPHABET",
    "PREFIXES",
    "InvalidIdError",
    "floor_id",
    "id_timestamp_ms",
    "is_id",
    "new_id",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U

PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "tenant": "ten",
        "key": "key",
        "endpoint": "ep",
        "event": "evt",
        "delivery": "dlv",
        "attempt": "att",
        "message": "msg",
        "event_type": "etype",
        "replay": "rpl",
    }
)

_ULID_CHARS = 26
_RANDOM_BITS = 80
_MAX_MS = (1 << 48) - 1
_MAX_ULID = (1 << 128) - 1
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,15}", re.ASCII)
# 26 characters carry 130 bits; a ULID uses 128, so the first one is 0-7.
_ULID_BODY = "[0-7][0-9A-HJKMNP-TV-Z]{25}"
_DECODE = {char: value for value, char in enumerate(ALPHABET)}
# Every 10-bit value as its two characters: 13 lookups write an id instead of 26 steps.
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)
_PAIR_SHIFTS = tuple(range(_ULID_CHARS * 5 - 10, -1, -10))
# The first 10 characters are the 48-bit time alone (and two leading zero bits), the
# last 16 the 80 random bits: `new_id` writes the time once per millisecond.
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_RANDOM_SHIFTS = tuple(range(_RANDOM_BITS - 10, -1, -10))
_KNOWN_PREFIXES = frozenset(PREFIXES.values())

_lock = threading.Lock()
_last_ms = -1
_last_value = 0
_time_chars: tuple[int, str] = (-1, "")  # the last time part written, and its characters


class InvalidIdError(MalformedError):
    """An id prefix, timestamp or id string is not acceptable."""


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """Return a new id such as `evt_01JD…`, sortable by creation time.

    Raises:
        InvalidIdError: the prefix is not 1-16 lowercase letters or digits
            (starting with a letter), or `now_ms` is outside 48 bits.
    """
    if prefix not in _KNOWN_PREFIXES and not _PREFIX_RE.fullmatch(prefix):
        raise InvalidIdError(f"id prefix {prefix!r} must be lowercase letters or digits")
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= ms <= _MAX_MS:
        raise InvalidIdError(f"timestamp {ms} ms does not fit in 48 bits")
    return f"{prefix}_{_encode_fast(_next_value(ms))}"


def floor_id(prefix: str, ms: int) -> str:
    """The smallest id `prefix` can carry at Unix millisecond `ms`: every id made then or
    later sorts at or after it (a keyset scan's start; a day's partition bound).

    Raises:
        InvalidIdError: `ms` is outside 48 bits.
    """
    if not 0 <= ms <= _MAX_MS:
        raise InvalidIdError(f"timestamp {ms} ms does not fit in 48 bits")
    return f"{prefix}_{_encode(ms << _RANDOM_BITS)}"


def is_id(value: str, prefix: str) -> bool:
    """Tell whether `value` is a well-formed id carrying `prefix`."""
    return re.fullmatch(re.escape(prefix) + "_" + _ULID_BODY, value, re.ASCII) is not None


def id_timestamp_ms(value: str) -> int:
    """Return the creation time, in Unix milliseconds, encoded in an id.

    Raises:
        InvalidIdError: `value` is not `<prefix>_<ULID>`.
    """
    prefix, _, body = value.rpartition("_")
    if not prefix or re.fullmatch(_ULID_BODY, body, re.ASCII) is None:
        raise InvalidIdError(f"{value!r} is not a prefixed ULID")
    return _decode(body) >> _RANDOM_BITS


def _next_value(ms: int) -> int:
    """Return the next 128-bit ULID value for `ms`, monotonic within a millisecond."""
    global _last_ms, _last_value
    with _lock:
        if ms == _last_ms and _last_value < _MAX_ULID:
            # Overflowing the 80 random bits carries into the timestamp, which
            # keeps the order at the cost of the id claiming 1 ms later.
            _last_value += 1
        else:
            _last_ms = ms
            _last_value = (ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
        return _last_value


def _encode(value: int) -> str:
    """Write a 128-bit integer as 26 Crockford base32 characters (10 bits per lookup)."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 0x3FF] for shift in _PAIR_SHIFTS])


def _encode_fast(value: int) -> str:
    """`_encode(value)`, writing the time part only when it differs from the last one's."""
    global _time_chars
    pairs = _PAIRS
    high = value >> _RANDOM_BITS
    cached_high, head = _time_chars  # one tuple read: another thread may replace it
    if high != cached_high:
        head = _encode(high << _RANDOM_BITS)[:10]
        _time_chars = (high, head)
    low = value & _RANDOM_MASK
    return head + "".join([pairs[(low >> shift) & 0x3FF] for shift in _RANDOM_SHIFTS])


def _decode(body: str) -> int:
    """Read 26 Crockford base32 characters back into an integer."""
    value = 0
    for char in body:
        value = (value << 5) | _DECODE[char]
    return value
