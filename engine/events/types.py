"""Event types: the names producers give their events.

An event type is 1-128 of `[a-zA-Z0-9_.-]`, conventionally dot-separated
(`billing.invoice.paid`). Matching is case-sensitive.
"""

from __future__ import annotations

import re

__all__ = ["EVENT_TYPE_PATTERN", "MAX_EVENT_TYPE_LENGTH", "is_valid_event_type"]

EVENT_TYPE_PATTERN = r"^[a-zA-Z0-9_.-]{1,128}$"
MAX_EVENT_TYPE_LENGTH = 128

_EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN, re.ASCII)


def is_valid_event_type(s: str) -> bool:
    """Tell whether `s` is an acceptable event type name."""
    # fullmatch, because `$` would also accept a trailing newline.
    return _EVENT_TYPE_RE.fullmatch(s) is not None
