"""What follows one delivery attempt: succeed, retry later, quarantine or disable.

Pure functions: the clock (`now`) and the randomness (`rand`) are passed in.
The schedule lists the delays after the first, second, … attempt; each delay
is spread by ±`JITTER` so endpoints that failed together do not all come back
together. `Retry-After` on 429/503 may push a retry later, never earlier, and
never beyond `MAX_RETRY_AFTER_S`.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from engine.errors import MalformedError

__all__ = [
    "DEFAULT_SCHEDULE_S",
    "JITTER",
    "MAX_RETRY_AFTER_S",
    "Decision",
    "InvalidScheduleError",
    "decide",
    "next_delay",
    "parse_retry_after",
    "parse_schedule",
]

DEFAULT_SCHEDULE_S: tuple[int, ...] = (
    5,
    300,
    1800,
    7200,
    18000,
    36000,
    50400,
    72000,
    86400,
)
JITTER = 0.2  # each delay lands uniformly within ±20 % of its schedule entry
MAX_RETRY_AFTER_S = 86400  # a Retry-After longer than a day is cut to a day
MAX_SCHEDULE_ENTRY_S = 86400 * 7
MAX_SCHEDULE_LENGTH = 50
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE_STATUS = 410
# Attempts that failed before any request, for a reason no retry can cure (the
# endpoint's configuration must change): quarantined at once, the class as the reason.
PERMANENT_ERRORS = frozenset({"transform_error"})

_DIGITS_RE = re.compile(r"[0-9]+", re.ASCII)

Action = Literal["succeed", "retry", "quarantine", "disable"]


class InvalidScheduleError(MalformedError):
    """A retry schedule is empty, too long, or has an entry out of bounds."""


@dataclass(frozen=True)
class Decision:
    """The outcome of judging one attempt; `delay_s` is set when retrying."""

    action: Action
    delay_s: float | None = None
    reason: str | None = None


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    *,
    rand: Callable[[], float] = random.random,
    jitter: float = JITTER,
) -> float | None:
    """Return the jittered delay before the next attempt, or None when exhausted.

    Raises:
        ValueError: `attempts_made` is below 1, or `jitter` is outside [0, 1).
    """
    if attempts_made < 1:
        raise ValueError(f"attempts_made is {attempts_made}; a delay follows an attempt")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter {jitter} must be in [0, 1)")
    if attempts_made > len(schedule):
        return None
    return schedule[attempts_made - 1] * (1 + jitter * (2 * rand() - 1))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Return a `Retry-After` header's wait in seconds, or None if absent or unusable.

    Accepts delta-seconds or an HTTP-date; naive datetimes are taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if _DIGITS_RE.fullmatch(text):
        # More than 15 digits is nonsense; call it forever and let the cap apply.
        return float(int(text)) if len(text) <= 15 else float("inf")
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    delta_s = (_as_utc(when) - _as_utc(now)).total_seconds()
    return delta_s if delta_s >= 0 else None


def decide(
    *,
    success: bool,
    status_code: int | None,
    attempts_made: int,
    schedule: Sequence[float],
    first_attempt_at: datetime,
    now: datetime,
    max_age_s: float,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
    error_class: str | None = None,
) -> Decision:
    """Decide what follows an attempt, from its result and the delivery's history.

    Raises:
        ValueError: `attempts_made` is below 1.
    """
    if success:
        return Decision("succeed")
    if error_class in PERMANENT_ERRORS:
        return Decision("quarantine", reason=error_class)
    if status_code == GONE_STATUS:
        return Decision("disable", reason="endpoint answered 410 Gone")
    delay_s = next_delay(attempts_made, schedule, rand=rand)
    if delay_s is None:
        return Decision("quarantine", reason="exhausted")
    reason = None
    if status_code in RETRY_AFTER_STATUSES and retry_after_s is not None:
        asked_s = min(retry_after_s, MAX_RETRY_AFTER_S)
        if asked_s > delay_s:
            delay_s, reason = asked_s, "retry-after"
    age_at_retry_s = (_as_utc(now) - _as_utc(first_attempt_at)).total_seconds() + delay_s
    if age_at_retry_s > max_age_s:
        return Decision("quarantine", reason="expired")
    return Decision("retry", delay_s=delay_s, reason=reason)


def parse_schedule(text: str) -> tuple[int, ...]:
    """Read a schedule such as `"5,300,1800"` into whole seconds.

    Raises:
        InvalidScheduleError: the text is empty, has more than 50 entries, or
            an entry that is not a whole number from 1 to 604800 (7 days).
    """
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise InvalidScheduleError("a retry schedule needs at least one delay")
    if len(items) > MAX_SCHEDULE_LENGTH:
        raise InvalidScheduleError(
            f"a retry schedule has at most {MAX_SCHEDULE_LENGTH} delays, not {len(items)}"
        )
    schedule = []
    for item in items:
        # The length check keeps int() away from absurdly long digit strings.
        in_bounds = _DIGITS_RE.fullmatch(item) and len(item) <= 9
        if not in_bounds or not 1 <= int(item) <= MAX_SCHEDULE_ENTRY_S:
            raise InvalidScheduleError(
                f"retry delay {item!r} must be whole seconds from 1 to {MAX_SCHEDULE_ENTRY_S}"
            )
        schedule.append(int(item))
    return tuple(schedule)


def _as_utc(moment: datetime) -> datetime:
    """Return `moment` as an aware datetime, reading a naive one as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
