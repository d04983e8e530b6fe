"""A rate as slots: when each released delivery of a rate-limited endpoint may be sent.

A release (`engine.deliveries.flow`) gives each delivery of a rate-limited endpoint a
*slot*: a time, `spacing_s(rate)` after the one before it. The delivery carries it as
its `next_attempt_at` while `queued`, and the endpoint's `endpoint_flow.next_slot_at`
holds the next free one (a GCRA's theoretical arrival time), shared by every worker on
every host. A release gives the slots that begin within `LOOKAHEAD_S` of the first it
may give, and that first is at least `LEAD_S` away, the time a released delivery takes
to be published and claimed. So the flow clock's passes may come late (a busy database
spaces them 100-150 ms apart) without losing any of the rate, which a bucket of a
twentieth of a second did: under a saturating flood a throttled endpoint got 18-27 of
its 50 a second.

The worker that claims the delivery waits until the slot, then takes a connection to the
receiver's host ahead of the requests queued for it (`engine.deliveries.hostgate`), and
sends only if no more than `late_s(rate)` has passed (`missed`). One it reaches later (a
worker stalled by its other work) goes back to `throttled` unsent, its attempt not spent
(`flow.give_back`), and a later release gives it a new slot. Sending it late instead
would bunch what the stall held back into one burst at the receiver.

Why these numbers: the slots are spaced at 95 % of the rate, and a send starts between
its slot and `late_s` after it, so the sends that start in any one second had their
slots within `1 + late_s` seconds: at most `ceil(0.95 * rate * (1 + late_s))`. `late_s`
is as long as keeps that within the rate plus 10 %, less a twentieth of the rate left to
the way from the worker to the receiver (0.116 s at 50/s, 0.105 s at 1,000/s), and
`LATE_S` below 10/s, where the 10 % holds no whole request (at most the rate then). The
cost is the 5 %: a throttled endpoint runs at about 95 % of its rate. Measured under a
saturating flood (`ops/bench/NOTES.md#throttled-beside-unthrottled`), a worker's stalls
still make it miss some slots: 50/s endpoints got a median 40 a second, never above 53.
"""

from __future__ import annotations

import datetime as dt
import math

# The slots' share of the rate: with the lateness allowed, no second's sends pass the rate.
SHARE = 0.95
# Most seconds a send may start after its slot, at any rate (`late_s` allows more to a rate
# whose tenth above it holds a whole request or more); later, it waits for a new slot.
LATE_S = 0.05
# Most seconds any send may start after its slot.
MAX_LATE_S = 0.15
# Seconds from a release to the first slot it gives: its publishing, claim and signing.
LEAD_S = 0.1
# Seconds of slots one release gives beyond its first: how late the next may come.
LOOKAHEAD_S = 0.25
# What a delivery whose slot passed before it could be sent stands for in the pipeline.
MISSED = "slot_missed"


def spacing_s(rate_per_s: float, share: float = SHARE) -> float:
    """Seconds between two slots at this rate, the slots taking `share` of it."""
    return 1.0 / (rate_per_s * share)


def assign(
    next_slot_at: dt.datetime | None,
    rate_per_s: float,
    now: dt.datetime,
    most: int,
    share: float = SHARE,
) -> list[dt.datetime]:
    """Up to `most` slots a release at `now` may give, in order.

    The first is the endpoint's next free slot, or `LEAD_S` from now if that is sooner
    (time no release used is not saved up: there is no burst); the last begins within
    `LOOKAHEAD_S` of `now + LEAD_S`. The next free slot is then `spacing_s` after the
    last one given.
    """
    first = now + dt.timedelta(seconds=LEAD_S)
    if next_slot_at is not None and next_slot_at > first:
        first = next_slot_at
    every = spacing_s(rate_per_s, share)
    horizon = (now - first).total_seconds() + LEAD_S + LOOKAHEAD_S
    if horizon < 0 or most <= 0:
        return []
    count = min(most, math.floor(horizon / every + 1e-9) + 1)
    return [first + dt.timedelta(seconds=n * every) for n in range(count)]


def wait_s(slot: dt.datetime, now: dt.datetime) -> float:
    """Seconds until the slot (0 once it began)."""
    return max(0.0, (slot - now).total_seconds())


def late_s(rate_per_s: float) -> float:
    """How late after its slot a send to an endpoint at this rate may start.

    As late as keeps the sends that start in any second within the rate plus 10 %, less
    a twentieth of the rate left to the way to the receiver: those sends' slots lie within
    `1 + late` seconds, `ceil(SHARE * rate * (1 + late))` of them at most. `LATE_S` at
    least (at every whole rate, the sends of a second then stay within the rate itself),
    `MAX_LATE_S` at most.
    """
    room = math.floor(rate_per_s * 1.1 + 1e-9) - math.floor(rate_per_s * 0.05 + 1e-9)
    fits = room / (SHARE * rate_per_s) - 1.0 - 1e-6
    return min(MAX_LATE_S, max(LATE_S, fits))


def missed(slot: dt.datetime, now: dt.datetime, allowed_s: float = LATE_S) -> float | None:
    """How late a send starting now would be, if later than `allowed_s`; else None (send it)."""
    late = (now - slot).total_seconds()
    return late if late > allowed_s else None
