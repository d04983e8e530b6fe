"""Fakes and helpers for the attempt pipeline's tests (`actors.pipeline`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from engine.db.models import utcnow
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision

WAIT_S = 2.0  # the longest any test waits for something that should happen


def claim(n: int) -> Claim:
    """A stand-in claim: just the attributes the pipeline and its callbacks read."""
    delivery = SimpleNamespace(id=f"dlv_{n}", attempts=1)
    return Claim(delivery, SimpleNamespace(id="ep_1"), SimpleNamespace(id=f"evt_{n}"))  # type: ignore[arg-type]


def request(delay_s: float = 0.01, status: int = 200) -> Any:
    """What the fake `send` is handed: how long to take and what to answer."""
    return SimpleNamespace(delay_s=delay_s, status=status)


def ready(error_class: str = "secret_unavailable") -> Outcome:
    return Outcome(utcnow(), 0.0, error_class=error_class, error_detail="no key")


def ids(group: Sequence[tuple[Claim, Outcome]]) -> list[str]:
    return [c.delivery.id for c, _o in group]


def wait_for(probe: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Poll until `probe` is truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s")
        time.sleep(0.005)
    return result


class Sender:
    """A fake `DeliveryClient.send`: sleeps as told, then answers the status it was told."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def __call__(self, req: Any) -> Outcome:
        self.sent.append(req)
        started = utcnow()
        await asyncio.sleep(req.delay_s)
        return Outcome(started, req.delay_s * 1000, status_code=req.status)


class RecordMany:
    """A fake `record_many`: remembers each group and decides from the status code."""

    def __init__(self, fail_with: BaseException | None = None, failures: int = -1) -> None:
        self.groups: list[list[tuple[Claim, Outcome]]] = []
        self.calls = 0
        self.fail_with = fail_with
        self.failures = failures  # how many calls fail; -1: every one
        self.lock = threading.Lock()

    def __call__(self, pairs: Sequence[tuple[Claim, Outcome]]) -> list[Decision]:
        with self.lock:
            self.calls += 1
            if self.fail_with is not None and (self.failures < 0 or self.calls <= self.failures):
                raise self.fail_with
            self.groups.append(list(pairs))
        return [
            Decision("succeed") if o.success else Decision("retry", delay_s=5.0) for _c, o in pairs
        ]

    def recorded(self) -> list[str]:
        with self.lock:
            return [one for group in self.groups for one in ids(group)]


class AfterRecord:
    """A fake `after_record` that remembers its calls and raises for some deliveries."""

    def __init__(self, raise_for: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, Outcome, Decision]] = []
        self.raise_for = raise_for

    def __call__(self, claimed: Claim, outcome: Outcome, decision: Decision) -> None:
        self.calls.append((claimed.delivery.id, outcome, decision))
        if claimed.delivery.id in self.raise_for:
            raise RuntimeError("the metrics are broken")


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, threading.Event]:
    """Start `target` in a thread; the event is set once it returned."""
    done = threading.Event()

    def body() -> None:
        target()
        done.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, done


def heavy(n: int, payload_bytes: int) -> Claim:
    """A stand-in claim whose event carries a payload of `payload_bytes`."""
    delivery = SimpleNamespace(id=f"dlv_{n}", attempts=1)
    event = SimpleNamespace(id=f"evt_{n}", payload="x" * payload_bytes)
    return Claim(delivery, SimpleNamespace(id="ep_1"), event)  # type: ignore[arg-type]
