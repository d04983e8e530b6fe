"""Outcome messages folded once, however often RabbitMQ hands them out.

A supervisor that dies after its fold committed and before its ack leaves the
message to be delivered again, to another supervisor or to itself restarted.
The fold records the message's id in its own transaction (`first_time`): the
insert of an id already there inserts nothing, and the fold is skipped. The
ids are kept `KEEP_S` (a redelivery comes as soon as the dead consumer's
connection closes, or when the first supervisor starts again), then pruned by
the scheduler's tick in bounded batches (`prune`).
"""

from __future__ import annotations

import datetime as dt

from engine.db.models import SupervisedMessage, db

KEEP_S = 86400  # how long a folded message's id is remembered (README: "Supervisors")
PRUNE_BATCH = 50_000  # ids pruned per pass at most (a pass each minute)


def first_time(message_id: str, now: dt.datetime) -> bool:
    """Record that this message is being folded; False if it was folded before.

    Call inside the fold's transaction: a rollback forgets the id with the fold.
    A second transaction inserting the same id waits for the first, then inserts
    nothing (PostgreSQL's unique index), so two supervisors never both fold it.
    """
    query = SupervisedMessage.insert(message_id=message_id, folded_at=now).on_conflict_ignore()
    return bool(db.execute(query).rowcount == 1)


def prune(now: dt.datetime, batch: int = PRUNE_BATCH) -> int:
    """Forget up to `batch` ids folded more than `KEEP_S` ago; answer how many."""
    cutoff = now - dt.timedelta(seconds=KEEP_S)
    oldest = (
        SupervisedMessage.select(SupervisedMessage.message_id)
        .where(SupervisedMessage.folded_at < cutoff)
        .limit(batch)
    )
    return int(SupervisedMessage.delete().where(SupervisedMessage.message_id.in_(oldest)).execute())
