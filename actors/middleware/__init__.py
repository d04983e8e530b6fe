"""Hookline's Dramatiq middleware: the delivery policy (retry schedule, age limit, quarantine).

The middleware that open and close a process's resources are in
`actors.lifecycle`; this package holds the policy alone, which depends on
the engine only.
"""

from actors.middleware.policy import (
    QUARANTINE_QUEUE,
    DeliveryAgeLimit,
    DeliveryPolicy,
    Quarantine,
    RetrySchedule,
)

__all__ = ["QUARANTINE_QUEUE", "DeliveryAgeLimit", "DeliveryPolicy", "Quarantine", "RetrySchedule"]
