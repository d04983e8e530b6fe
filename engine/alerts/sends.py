"""Each channel reached at most once per alert, however many supervisors hold its message.

An alert's message can be in two supervisors' hands at once: published twice
(the outbox's commit failed after the broker confirmed), or handed out again
after the supervisor sending it died. Before a channel is dialled its sender
claims (alert, channel) in a transaction of its own (`claim`); whoever finds
the claim taken skips the channel, and `done` marks it sent. A channel that
surely did not take the alert is given back (`give_back`) for a retry.

A claim whose sender died mid-send stays: the alert may or may not have
arrived. The channels that drop duplicates themselves (PagerDuty by its
`dedup_key`, the generic webhook by its `webhook-id`) may be claimed again once
the claim is stale (`retake_before`); Slack and email are never dialled twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from engine.alerts.outbox import mark_sent
from engine.db.models import AlertSend, db

MINE = "mine"  # the caller holds the claim: dial the channel
SENT = "sent"  # the channel took the alert already
HELD = "held"  # another sender holds it, or one died holding it


@dataclass(frozen=True)
class Claim:
    """The answer to a claim: its status, the token that holds it, when it was taken."""

    alert_id: str
    channel: str
    status: str
    token: str | None = None
    claimed_at: dt.datetime | None = None


def claim(
    alert_id: str,
    channel: str,
    *,
    now: dt.datetime,
    retake_before: dt.datetime | None = None,
) -> Claim:
    """Claim one channel's send of an alert, committed before the answer.

    `retake_before`: a claim not sent and taken before then is taken over (for a
    channel that drops duplicates); None never takes one over.
    """
    token = uuid.uuid4().hex
    key = (AlertSend.alert_id == alert_id) & (AlertSend.channel == channel)
    with db.atomic():
        query = AlertSend.insert(
            alert_id=alert_id, channel=channel, claim=token, claimed_at=now
        ).on_conflict_ignore()
        if db.execute(query).rowcount == 1:
            return Claim(alert_id, channel, MINE, token, now)
        row = AlertSend.get_or_none(key)
        if row is None:  # given back since the insert: the next retry takes it
            return Claim(alert_id, channel, HELD)
        if row.sent_at is not None:
            return Claim(alert_id, channel, SENT, claimed_at=row.claimed_at)
        if retake_before is not None and row.claimed_at < retake_before:
            taken = (
                AlertSend.update(claim=token, claimed_at=now)
                .where(key & (AlertSend.claim == row.claim) & AlertSend.sent_at.is_null())
                .execute()
            )
            if taken:
                return Claim(alert_id, channel, MINE, token, now)
        return Claim(alert_id, channel, HELD, claimed_at=row.claimed_at)


def done(taken: Claim, now: dt.datetime) -> None:
    """Record that the channel took the alert: the claim is sent, the alert lists it."""
    with db.atomic():
        AlertSend.update(sent_at=now).where(
            (AlertSend.alert_id == taken.alert_id)
            & (AlertSend.channel == taken.channel)
            & (AlertSend.claim == taken.token)
        ).execute()
        mark_sent(taken.alert_id, taken.channel)


def give_back(taken: Claim) -> None:
    """Free a claim whose channel surely did not take the alert, for a retry to take."""
    AlertSend.delete().where(
        (AlertSend.alert_id == taken.alert_id)
        & (AlertSend.channel == taken.channel)
        & (AlertSend.claim == taken.token)
        & AlertSend.sent_at.is_null()
    ).execute()
