"""Each host's share of a crowded pipeline, and when its deliveries over the share come back.

A worker process holds up to `worker_max_in_flight` attempts, but sends at most
`max_connections_per_host` to one host at once: the rest wait in the host's
gate, in memory. One tenant's flood to a slow endpoint (200 ms a request, 16
at once: 80 a second) filled every slot that way; every other tenant's
attempts waited behind it for room, and so did the fan-outs behind them in
RabbitMQ (ops/bench/NOTES.md#noisy-neighbour). So once the pipeline is
crowded (`crowded_at` attempts started, half of `worker_max_in_flight`), a host
that holds more than half of them, and more than `share`, holds no more: its
claims over that go back to PostgreSQL, `scheduled` at a little more than the
pace the host has been answering in this process, and the scheduler hands them
out again, round-robin over tenants (`engine.deliveries.schedule.take_due`).
Many hosts sharing a crowded pipeline (one tenant's fan-out to ten endpoints)
are never held back, and until the pipeline is crowded nothing is.

Pure: the clock is passed in, the caller counts attempts in (`started`) and
out (`finished`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Sequence

# Held-back claims come back this much faster than the host's recent pace: the pace is
# measured from answers, and answers only come as fast as claims are let through, so at
# exactly the pace a host fed less than it can take would be fed ever less (a flood's
# endpoint fell from 80 to 2 answers a second). A little faster, its share refills, and
# the few over it are held back again.
PACE_MARGIN = 1.5
RATE_WINDOW_S = 5.0  # a host's pace: the attempts it finished over (at most) this window
MIN_SPAN_S = 0.5  # ... and a host has a pace once it has answered for at least this long
# A host that has answered nothing yet has no pace: its claims held back come back within
# this, by when it has answered and one held back again is spaced at its measured pace.
# Spaced at its share a second instead, a fast host's first burst (512 held, a share of 64)
# waited 8 s in PostgreSQL while the host could have taken it in half of one.
UNKNOWN_PACE_WAIT_S = 1.0


class HostShare:
    """Attempts per host in one pipeline, each host's pace, and the split of new claims."""

    def __init__(self, share: int, crowded_at: int) -> None:
        if share < 1:
            raise ValueError("share must be at least 1")
        self.share = share
        self.crowded_at = crowded_at
        # The pace `rate` answers for a host with no answers yet.
        self.min_rate_per_s = float(share)
        self.held: Counter[Hashable] = Counter()
        self.total = 0  # attempts in the pipeline, every host's
        self._done: dict[Hashable, deque[float]] = {}
        self._next_at: dict[Hashable, float] = {}

    def started(self, keys: Sequence[Hashable]) -> None:
        """Attempts to these hosts entered the pipeline."""
        self.held.update(keys)
        self.total += len(keys)

    def finished(self, keys: Sequence[Hashable], now: float) -> None:
        """Attempts to these hosts left the pipeline (answered, or given up)."""
        self.total -= len(keys)
        for key in keys:
            self.held[key] -= 1
            if self.held[key] <= 0:
                del self.held[key]
            done = self._done.get(key)
            if done is None:
                done = self._done[key] = deque()
            done.append(now)
            while done and done[0] < now - RATE_WINDOW_S:
                done.popleft()

    def _pace_known(self, key: Hashable, now: float) -> bool:
        """Whether the host has answered for at least `MIN_SPAN_S` (within the window).

        Its first answers alone are no pace: a host that was sent 600 at once and has
        answered 3 in its first tenth of a second is not answering 2 a second, and spaced
        at that, the claims held back from it waited up to ten minutes (CI, a fan-out of
        1,000 events to three endpoints of one receiver).
        """
        done = self._done.get(key)
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
        return done is not None and len(done) > 0 and now - done[0] >= MIN_SPAN_S

    def rate(self, key: Hashable, now: float) -> float:
        """Attempts per second this host finished lately (over up to `RATE_WINDOW_S`)."""
        done = self._done.get(key)
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
        if not done:
            return self.min_rate_per_s
        return max(1.0, len(done) / max(MIN_SPAN_S, now - done[0]))

    def split(
        self, keys: Sequence[Hashable], now: float
    ) -> tuple[list[int], list[tuple[int, float]]]:
        """Which of new claims (by host) to keep, and for the rest, in how many seconds to retry.

        Answers the indexes kept, and (index, delay in seconds) for each held back.
        Nothing is held back while fewer than `crowded_at` attempts are in the pipeline
        (started, not finished: room reserved by threads still claiming does not count),
        nor to a host holding at most half of them or `share`. A host over that has its
        claims spaced at (a little more than) its own pace, after those it holds: each
        comes back about when the host could take it.
        """
        if self.total < self.crowded_at:
            return list(range(len(keys))), []
        kept: list[int] = []
        later: list[tuple[int, float]] = []
        taking: Counter[Hashable] = Counter()
        limit = max(self.share, self.total // 2)
        for index, key in enumerate(keys):
            if self.held[key] + taking[key] < limit:
                taking[key] += 1
                kept.append(index)
                continue
            if not self._pace_known(key, now):
                # No pace yet (and held back, it holds at least its share: spaced at its
                # share a second, it would come back a second or more later).
                later.append((index, UNKNOWN_PACE_WAIT_S))
                continue
            rate = self.rate(key, now)
            at = max(self._next_at.get(key, 0.0), now + (self.held[key] + taking[key]) / rate)
            self._next_at[key] = at + 1.0 / (rate * PACE_MARGIN)
            later.append((index, at - now))
        if len(self._done) > 1024 or not self.held:
            self._forget(now)
        return kept, later

    def _forget(self, now: float) -> None:
        """Drop the pace of hosts with nothing in flight and nothing spaced out any more."""
        for key in [k for k, at in self._next_at.items() if at < now]:
            del self._next_at[key]
        for key in [k for k, done in self._done.items() if not done or done[-1] < now - 60]:
            del self._done[key]
