"""The queues Hookline declares on RabbitMQ, classic or quorum (`HOOKLINE_QUEUE_TYPE`).

Dramatiq's `RabbitmqBroker` declares three queues per actor queue: the queue, its
`.DQ` (messages delayed by dramatiq's `Retries`) and its `.XQ` (dead letters, kept a
week). `Broker` declares all three, and `Quarantine` its own queue, with the arguments
of the chosen type: quorum queues get `x-queue-type: quorum`, and the queues whose
messages are processed also `x-delivery-limit` (`HOOKLINE_QUEUE_DELIVERY_LIMIT`): a
message that keeps killing its consumer, a poison message, is dead-lettered to `.XQ`
(x-death reason `delivery_limit`) instead of coming back forever. The work itself is in
PostgreSQL under a lease, so the scheduler publishes it again once the lease ran out,
and a delivery whose claims keep dying is quarantined (`engine.deliveries.lost`).

No limit on the others: a worker holds a `.DQ` message unacknowledged until it is due,
then moves it to the queue, so a restart returns it though nothing failed; nothing of
Hookline's consumes `.XQ` and `hookline.quarantine`, and an operator who looks at them
in the management UI (a get, then a requeue) counts a delivery each time, so a limit
would drop what they looked at (these queues have no dead-letter exchange).

Quorum queues are always durable, never exclusive or auto-deleted, and refuse
`x-max-priority` and `x-queue-mode`: dramatiq's broker sets only durable queues with
dead-letter routing and the `.XQ`'s message TTL, which quorum queues keep (RabbitMQ
3.10+), and `x-max-priority` only when given `max_priority`, which `Broker` refuses
with quorum queues.

RabbitMQ never changes an existing queue's type or arguments: a declaration that
differs fails with PRECONDITION_FAILED, and `QueueMismatchError` says how to switch
(README, "Queue types").
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from engine.errors import SettingsError
from engine.settings import Settings

PRECONDITION_FAILED = 406


class QueueMismatchError(SettingsError):
    """RabbitMQ holds a queue of another type, or with other arguments, than the settings ask."""

    def __init__(self, queue_name: str, queue_type: str, reply: str) -> None:
        super().__init__(
            "HOOKLINE_QUEUE_TYPE",
            f"RabbitMQ refused to declare queue {queue_name!r} as a {queue_type} queue"
            f" ({reply}). RabbitMQ never changes an existing queue's type or arguments"
            " (HOOKLINE_QUEUE_TYPE, HOOKLINE_QUEUE_DELIVERY_LIMIT): drain the queues, stop"
            " every Hookline process, delete the queues or point HOOKLINE_BROKER_URL at a"
            " new vhost, then start again (README: Queue types).",
        )
        self.queue_name = queue_name
        self.reply = reply


def arguments(settings: Settings, *, limited: bool) -> dict[str, Any]:
    """The arguments a queue carries for the configured type; `limited`: one whose
    messages are processed, with a delivery limit on quorum queues."""
    if settings.queue_type != "quorum":
        return {}
    if not limited:
        return {"x-queue-type": "quorum"}
    return {"x-queue-type": "quorum", "x-delivery-limit": settings.queue_delivery_limit}


def declare(
    channel: Any, queue_name: str, settings: Settings, *, limited: bool = False, **extra: Any
) -> Any:
    """Declare a durable queue of the configured type on a channel.

    Raises:
        QueueMismatchError: the queue exists with another type or other arguments.
    """
    own = arguments(settings, limited=limited)
    try:
        return channel.queue_declare(queue=queue_name, durable=True, arguments={**extra, **own})
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        raise QueueMismatchError(queue_name, settings.queue_type, exc.reply_text) from None


class Broker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, its three queues per actor queue of the configured type."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        if settings.queue_type == "quorum" and options.get("max_priority"):
            raise SettingsError("HOOKLINE_QUEUE_TYPE", "quorum queues refuse x-max-priority")
        super().__init__(**options)
        self.settings = settings

    def _declare_queue(self, queue_name: str) -> Any:
        return self._declare(queue_name, self._build_queue_arguments(queue_name), limited=True)

    def _declare_dq_queue(self, queue_name: str) -> Any:
        arguments = self._build_queue_arguments(queue_name)
        return self._declare(dq_name(queue_name), arguments, limited=False)

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {"x-message-ttl": DEAD_MESSAGE_TTL}
        return self._declare(xq_name(queue_name), arguments, limited=False)

    def _declare(self, queue_name: str, extra: dict[str, Any], *, limited: bool) -> Any:
        try:
            return declare(self.channel, queue_name, self.settings, limited=limited, **extra)
        except QueueMismatchError:
            del self.connection  # the broker closed the channel; start afresh next time
            raise
