"""Declares Hookline's actors on a broker: the one module that knows them all.

Each actor lives in a module of its own (`actors.fan_out`, `actors.deliver`,
`actors.verify`, `actors.supervise`, `actors.alert`) and never imports this
one, nor the broker, back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware

from actors import alert, deliver, fan_out, queues, supervise, verify
from actors.broker import Publisher, connection_url
from actors.middleware import Quarantine
from actors.runtime import Runtime
from engine.errors import SettingsError
from engine.settings import Settings, masked_url

# What `hookline worker` consumes; `hookline supervisor` consumes the other two, alone.
WORKER_QUEUES = (fan_out.QUEUE_NAME, deliver.QUEUE_NAME, verify.QUEUE_NAME)
SUPERVISOR_QUEUES = (supervise.QUEUE_NAME, alert.QUEUE_NAME)


@dataclass(frozen=True)
class Actors:
    """The actors of one broker."""

    fan_out: dramatiq.Actor[Any, Any]
    deliver: dramatiq.Actor[Any, Any]
    verify_endpoint: dramatiq.Actor[Any, Any]
    supervise: dramatiq.Actor[Any, Any]
    alert: dramatiq.Actor[Any, Any]


def declare_actors(broker: dramatiq.Broker, runtime: Runtime | None) -> Actors:
    """Declare Hookline's actors on a broker, each bound to the process's runtime.

    Without a runtime the broker only publishes: an actor run there raises.
    """

    def declare(
        fn: Callable[..., None], name: str, queue_name: str, **options: Any
    ) -> dramatiq.Actor[Any, Any]:
        usable = {k: v for k, v in options.items() if k in broker.actor_options}
        declaring = dramatiq.actor(broker=broker, actor_name=name, queue_name=queue_name, **usable)
        return declaring(_bind(fn, runtime))

    return Actors(
        fan_out=declare(fan_out.fan_out, "fan_out", fan_out.QUEUE_NAME),
        deliver=declare(deliver.deliver, "deliver", deliver.QUEUE_NAME),
        verify_endpoint=declare(verify.verify_endpoint, "verify_endpoint", verify.QUEUE_NAME),
        supervise=declare(supervise.supervise, "supervise", supervise.QUEUE_NAME),
        alert=declare(alert.alert, "alert", alert.QUEUE_NAME, **alert.RETRIES),
    )


def publisher(settings: Settings, middleware: Sequence[Middleware] = ()) -> Publisher:
    """A publish-only broker and its publisher, as the API and the scheduler use.

    `middleware`: the broker's, none by default (the API's).

    Raises:
        RuntimeError: the settings name no RabbitMQ.
    """
    if settings.broker_url is None:
        raise RuntimeError("the API needs HOOKLINE_BROKER_URL; `hookline up` runs embedded")
    broker = queues.Broker(
        settings,
        url=connection_url(settings, publisher=True),
        confirm_delivery=True,
        middleware=list(middleware),
    )
    declare_actors(broker, None)
    return Publisher(broker, settings)


def check_queues(settings: Settings) -> None:
    """Declare every queue Hookline uses, of the configured type, before a process starts.

    A process started against queues of another type would fail on every publish or
    consume; this fails once, with what to do. RabbitMQ being down is not this check's
    business: the processes wait for it themselves.

    A RabbitMQ that answers but refuses Hookline (a vhost that does not exist, a user
    without access to it, a wrong password) is not an outage: no wait ends it, so it fails
    here too, in one line, instead of each process retrying it with tracebacks.

    Raises:
        actors.queues.QueueMismatchError: RabbitMQ holds one of them of another type.
        engine.errors.SettingsError: RabbitMQ refused `HOOKLINE_BROKER_URL`'s user or vhost.
    """
    if settings.broker_url is None:
        return
    broker = queues.Broker(settings, url=connection_url(settings, publisher=True), middleware=[])
    pika_logs = logging.getLogger("pika")
    level = pika_logs.level
    pika_logs.setLevel(logging.CRITICAL)  # its dozen lines per refused connection: ours says it
    try:
        for queue_name in (*WORKER_QUEUES, *SUPERVISOR_QUEUES):
            broker.declare_queue(queue_name, ensure=True)
        if not Quarantine().declare(broker.channel, settings):
            del broker.channel  # RabbitMQ closed it; the queue is there, with other arguments
    except (ConnectionClosed, pika.exceptions.AMQPError) as exc:
        refusal = broker_refusal(exc)
        if refusal is not None:
            raise SettingsError(
                "HOOKLINE_BROKER_URL", f"RabbitMQ at {masked_url(settings.broker_url)} {refusal}"
            ) from None
        return
    finally:
        broker.close()
        pika_logs.setLevel(level)


def broker_refusal(exc: BaseException) -> str | None:
    """What RabbitMQ refused, when `exc` (or what it wraps) says it refused; None otherwise."""
    for cause in (exc, *exc.args, exc.__cause__, exc.__context__):
        if isinstance(cause, pika.exceptions.ProbableAuthenticationError):
            return "refused the user name or password: check both in the URL"
        if isinstance(cause, pika.exceptions.ProbableAccessDeniedError):
            return (
                "refused the virtual host: create it (rabbitmqctl add_vhost) and give the"
                " user access to it (rabbitmqctl set_permissions), or fix its name in the URL"
            )
    return None


def _bind(fn: Callable[..., None], runtime: Runtime | None) -> Callable[..., None]:
    """`fn` with the runtime as its first argument; named as `fn` for dramatiq's logs."""
    if runtime is None:

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"{fn.__name__} runs in a worker; this process only publishes")

        return functools.update_wrapper(refuse, fn)
    return functools.update_wrapper(functools.partial(fn, runtime), fn)
