"""The event-type patterns an endpoint subscribes with.

Event types themselves are `engine.events.types`. An endpoint subscribes with a list of patterns:
an exact event type, a prefix wildcard `billing.*` (any event type below
`billing.`, however deep, but not `billing` itself), or `*` for everything.
An empty list also means everything. Matching is case-sensitive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

from engine.events.types import EVENT_TYPE_PATTERN, MAX_EVENT_TYPE_LENGTH, is_valid_event_type

__all__ = [
    "EVENT_TYPE_PATTERN",
    "MAX_EVENT_TYPE_LENGTH",
    "WILDCARD",
    "compile_patterns",
    "is_valid_event_type",
    "is_valid_pattern",
    "matches",
]

WILDCARD = "*"
_PREFIX_SUFFIX = ".*"


def is_valid_pattern(s: str) -> bool:
    """Tell whether `s` is an event type, a `prefix.*` wildcard or `*`."""
    if s == WILDCARD:
        return True
    if s.endswith(_PREFIX_SUFFIX):
        stem = s[: -len(_PREFIX_SUFFIX)]
        return len(s) <= MAX_EVENT_TYPE_LENGTH and is_valid_event_type(stem)
    return is_valid_event_type(s)


def compile_patterns(patterns: Iterable[str]) -> Callable[[str], bool]:
    """Return a predicate equivalent to `matches(event_type, patterns)`, built once."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for pattern in patterns:
        if pattern == WILDCARD:
            return _match_all
        if pattern.endswith(_PREFIX_SUFFIX):
            # Keep the dot, so `billing.*` cannot match `billingx.paid`.
            prefixes.append(pattern[:-1])
        else:
            exact.add(pattern)
    if not exact and not prefixes:
        return _match_all
    frozen_exact = frozenset(exact)
    prefix_tuple = tuple(prefixes)

    def match(event_type: str) -> bool:
        if event_type in frozen_exact:
            return True
        # startswith with a longer string: `billing.` alone is not below `billing.`
        return any(
            event_type.startswith(prefix) and len(event_type) > len(prefix)
            for prefix in prefix_tuple
        )

    return match


def matches(event_type: str, patterns: Sequence[str]) -> bool:
    """Tell whether an event type is selected by an endpoint's patterns."""
    return _compiled(tuple(patterns))(event_type)


@functools.lru_cache(maxsize=4096)
def _compiled(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """The predicate of a pattern list, built once per distinct list (fan-out asks per event)."""
    return compile_patterns(patterns)


def _match_all(event_type: str) -> bool:
    """Select every event type."""
    return True
