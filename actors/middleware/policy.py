"""The delivery policy as Dramatiq middleware: retry schedule, age limit, quarantine.

Registered on the worker's broker, so that `broker.middleware` shows the whole
policy. The recorder finds it there (`DeliveryPolicy.on(broker)`) and hands
its `decide` to `engine.deliveries.record.record_many`, which calls it inside
the recording transaction: an attempt's row and the delivery's next state
commit together. Underneath are the pure `engine.retry` functions.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from actors import queues
from engine import retry
from engine.deliveries.client import Outcome
from engine.deliveries.record import Claim
from engine.retry import Decision
from engine.settings import Settings

QUARANTINE_QUEUE = "hookline.quarantine"
# The quarantine queue's own bound: nothing consumes the copies, and a receiver failing for
# days must not fill RabbitMQ's disk (its alarm blocks every publisher, the API's included).
# Past it, the oldest copies go; the delivery rows keep every one.
QUARANTINE_BOUND: dict[str, Any] = {
    "x-max-length": 1_000_000,
    "x-max-length-bytes": 2 * 1024**3,
    "x-overflow": "drop-head",
}

log = structlog.get_logger("hookline.broker")

_Part = TypeVar("_Part", bound=Middleware)


class RetrySchedule(Middleware):
    """When a failed delivery is tried again: a delay after each attempt, jittered.

    An endpoint's own schedule replaces it; past its last delay, the delivery
    is quarantined (`exhausted`).
    """

    def __init__(
        self, schedule_s: Sequence[float], *, rand: Callable[[], float] = random.random
    ) -> None:
        self.schedule_s = tuple(schedule_s)
        self.rand = rand

    def __repr__(self) -> str:
        return f"RetrySchedule(schedule_s={self.schedule_s!r})"


class DeliveryAgeLimit(Middleware):
    """A delivery whose next try would fall past `max_age_s` after its event is quarantined.

    Counted from when a replay or a resume last put it back in play, if one did.
    """

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s

    def __repr__(self) -> str:
        return f"DeliveryAgeLimit(max_age_s={self.max_age_s!r})"


class Quarantine(Middleware):
    """Names and declares the durable queue that quarantined deliveries are copied to.

    The delivery row is the quarantine; the scheduler copies each one to this
    queue once (`Publisher.publish_quarantine`), for the operators' eyes.
    """

    def __init__(self, queue_name: str = QUARANTINE_QUEUE) -> None:
        self.queue_name = queue_name

    def declare(self, channel: Any, settings: Settings) -> bool:
        """Declare the queue on an AMQP channel: durable, of the configured type, without
        dead-lettering, bounded (`QUARANTINE_BOUND`), in whatever vhost Hookline is given.

        Answers False when it exists with other arguments: one an older Hookline declared
        without its bound, or of the other type. RabbitMQ then closed the channel, and the
        caller goes on with a new one: the queue is there, and the copies still go to it,
        bounded by a policy if the operator set one (`ops/rabbitmq/definitions.json`); a
        warning says how to have Hookline's own bound.
        """
        try:
            queues.declare(channel, self.queue_name, settings, **QUARANTINE_BOUND)
        except queues.QueueMismatchError as exc:
            log.warning(
                "quarantine_queue_not_bounded_by_hookline",
                queue=self.queue_name,
                refused=exc.reply,
                fix="its messages are copies: delete the queue and Hookline declares it"
                " bounded, or keep the guard policy of ops/rabbitmq/definitions.json",
            )
            return False
        return True

    def __repr__(self) -> str:
        return f"Quarantine(queue_name={self.queue_name!r})"


def find(broker: dramatiq.Broker, kind: type[_Part]) -> _Part | None:
    """The broker's middleware of that kind, if it has one."""
    for middleware in broker.middleware:
        if isinstance(middleware, kind):
            return middleware
    return None


def require(broker: dramatiq.Broker, kind: type[_Part]) -> _Part:
    """The broker's middleware of that kind.

    Raises:
        LookupError: the broker has none.
    """
    found = find(broker, kind)
    if found is None:
        raise LookupError(f"the broker has no {kind.__name__} middleware")
    return found


@dataclass(frozen=True)
class DeliveryPolicy:
    """The three parts of the policy, as the one decision the recorder makes per attempt."""

    retries: RetrySchedule
    age_limit: DeliveryAgeLimit
    quarantine: Quarantine

    @classmethod
    def of(
        cls,
        schedule_s: Sequence[float],
        max_age_s: float,
        *,
        rand: Callable[[], float] = random.random,
    ) -> DeliveryPolicy:
        """A policy of new parts."""
        return cls(RetrySchedule(schedule_s, rand=rand), DeliveryAgeLimit(max_age_s), Quarantine())

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        """The policy the settings ask for (`HOOKLINE_RETRY_SCHEDULE_S`, `HOOKLINE_MAX_AGE_S`)."""
        return cls.of(settings.retry_schedule_s, settings.max_age_s)

    @classmethod
    def on(cls, broker: dramatiq.Broker) -> DeliveryPolicy:
        """The policy registered on a broker's middleware.

        Raises:
            LookupError: a part of the policy is not registered.
        """
        return cls(
            require(broker, RetrySchedule),
            require(broker, DeliveryAgeLimit),
            require(broker, Quarantine),
        )

    @property
    def middleware(self) -> list[Middleware]:
        """The parts, to register on a broker."""
        return [self.retries, self.age_limit, self.quarantine]

    def decide(self, claimed: Claim, outcome: Outcome, now: dt.datetime) -> Decision:
        """What follows one attempt: succeed, retry after a delay, quarantine or disable.

        A `transform_error` is quarantined at once: no retry can succeed until the
        endpoint's transform changes. A delivery a replay or a resume put back in play
        (`restarted_at`) counts its schedule and age from then: a paused or replayed
        delivery is never aged out by the time it waited.
        """
        delivery = claimed.delivery
        return retry.decide(
            success=outcome.success,
            status_code=outcome.status_code,
            attempts_made=delivery.attempts - (delivery.restart_attempts or 0),
            schedule=claimed.endpoint.retry_schedule or self.retries.schedule_s,
            first_attempt_at=delivery.restarted_at or delivery.event_created_at,
            now=now,
            max_age_s=self.age_limit.max_age_s,
            retry_after_s=outcome.retry_after_s,
            rand=self.retries.rand,
            error_class=outcome.error_class,
        )
