"""Room for a worker process's attempts in flight, counted and weighed.

`worker_max_in_flight` bounds the attempts a process holds, finished-but-not-
recorded and handed-off ones included; `worker_max_in_flight_bytes` bounds the
event payloads they hold. A thread waits for room before it claims: that is
the backpressure that keeps memory flat. An empty pipeline takes any batch,
however large, so that nothing waits forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from engine.deliveries.client import Outcome, Request
from engine.deliveries.record import Claim


def weigh(work: Sequence[tuple[Claim, Request | Outcome]]) -> int:
    """The bytes a batch holds: each event's body, and its stored payload, once."""
    sizes: dict[str, int] = {}
    for claimed, item in work:
        body = len(item.body) if isinstance(item, Request) else 0
        sizes[claimed.event.id] = body + len(claimed.event.payload or "")
    return sum(sizes.values())


class Admission:
    """The attempts and bytes in flight, and the threads waiting for room."""

    def __init__(self, max_in_flight: int, max_in_flight_bytes: int = 0) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        # Payload bytes held by the batches in flight; 0 = not bounded. Counting attempts
        # alone, 1,024 attempts of distinct 256 KiB events would hold about 512 MiB.
        self.max_in_flight_bytes = max_in_flight_bytes
        self.in_flight_bytes = 0
        # The pipeline's one lock (re-entrant): batches change under it too.
        self.lock = threading.Condition()
        self._waiting = 0  # threads waiting for room, to notify only when someone waits

    @property
    def weighs(self) -> bool:
        """Whether payload bytes are bounded, and so batches weighed."""
        return self.max_in_flight_bytes > 0

    def reserve(self, count: int) -> None:
        """Wait until `count` more attempts fit (a larger batch waits for an empty pipeline)."""
        if count <= 0:
            return
        with self.lock:
            self._wait_locked(lambda: self._count_fits(count))
            self.in_flight += count

    def release(self, count: int) -> None:
        """Give back room reserved for attempts that will not be made."""
        if count <= 0:
            return
        with self.lock:
            self.in_flight -= count
            self._notify_locked()

    def hold_bytes(self, size: int) -> None:
        """Wait until `size` more bytes fit (a larger batch waits for no bytes in flight)."""
        if not self.weighs or size <= 0:
            return
        with self.lock:
            self._wait_locked(lambda: self._bytes_fit(size))
            self.in_flight_bytes += size

    def take_now(self, count: int, size: int) -> bool:
        """Take room for `count` attempts and `size` bytes if both fit now, without waiting."""
        with self.lock:
            if not (self._count_fits(count) and self._bytes_fit(size)):
                return False
            self.in_flight += count
            if self.weighs:
                self.in_flight_bytes += size
            return True

    def free(self, count: int, size: int) -> None:
        """Give back the room of `count` attempts that ended, and `size` bytes of batches."""
        with self.lock:
            self.in_flight -= count
            if self.weighs:
                self.in_flight_bytes -= size
            self._notify_locked()

    def wait_empty(self, timeout_s: float) -> int:
        """Wait until nothing is in flight, at most `timeout_s`; answer how many still are."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            self._waiting += 1
            try:
                while self.in_flight and time.monotonic() < deadline:
                    self.lock.wait(max(0.0, deadline - time.monotonic()))
            finally:
                self._waiting -= 1
            return self.in_flight

    def _count_fits(self, count: int) -> bool:
        return not self.in_flight or self.in_flight + count <= self.max_in_flight

    def _bytes_fit(self, size: int) -> bool:
        return (
            not self.weighs
            or not self.in_flight_bytes
            or self.in_flight_bytes + size <= self.max_in_flight_bytes
        )

    def _wait_locked(self, fits: Callable[[], bool]) -> None:
        """Wait, holding the lock, until `fits()`; a waiter is notified by every release."""
        while not fits():
            self._waiting += 1
            try:
                self.lock.wait()
            finally:
                self._waiting -= 1

    def _notify_locked(self) -> None:
        if self._waiting:
            self.lock.notify_all()
