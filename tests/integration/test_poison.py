"""A poison delivery on the real processes: it kills every worker that attempts it."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import psycopg2
import pytest

from tests.factories import eventually
from tests.integration.faults import delivery_states, isolated_stack, send_events
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The claim's lease is the request timeout plus the grace: 15.5 s between lost attempts. The
# kill must land before the request times out (the timeout would be recorded, not lost),
# which a machine loaded by both CI passes can take seconds to do.
POISON = {
    "HOOKLINE_REQUEST_TIMEOUT_S": "15",
    "HOOKLINE_CONNECT_TIMEOUT_S": "1",
    "HOOKLINE_LEASE_GRACE_S": "0.5",
    "HOOKLINE_MAX_LOST_ATTEMPTS": "2",
}


def test_a_delivery_that_kills_every_worker_ends_quarantined_instead_of_going_round(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/poison", default=200, delay_s=30)  # the worker dies while it waits
    with isolated_stack(tmp_path, **POISON) as (api, processes, pg_url, _vhost):
        key = api.tenant()
        status, body = api.call("POST", "/v1/endpoints", {"url": receiver.url("/poison")}, key=key)
        assert status == 201, body
        send_events(api, key, 1, threads=1)
        # The fan-out sends its first attempt before it commits the claim (early attempts),
        # so a kill must wait for that commit, or the claim rolls back and the event is
        # fanned out anew (a loaded machine can take longer than the test to commit). Each
        # kill then loses one claim, and the scheduler publishes the delivery after its lease.
        # The second request waits for the restarted worker, the lease and a scheduler tick: a
        # CI run with both passes loading the machine took over 40 s for them.
        for n in (1, 2):
            receiver.wait_for("/poison", n, timeout_s=90)
            eventually(lambda n=n: _claims(pg_url) == n, timeout_s=20)
            processes.stop("worker", signal.SIGKILL)
            processes.start("worker")

        try:
            eventually(lambda: delivery_states(pg_url) == {"quarantined": 1}, timeout_s=120)
        except AssertionError as exc:  # what the row and the processes say, for the next look
            raise AssertionError(
                f"{exc}\ndelivery: {_row(pg_url)}\n-- scheduler:\n"
                f"{processes.tail('scheduler', 30)}\n-- worker:\n{processes.tail('worker', 30)}"
            ) from None
        time.sleep(16.0)  # a lease more: nothing publishes it again
        reason, attempts, recorded, last_error = _the_delivery(pg_url)

    assert len(receiver.received("/poison")) == 2
    assert (reason, attempts, recorded) == ("lost_attempts", 2, 0)
    assert "2 attempts ended without an outcome" in last_error


def _claims(pg_url: str) -> int | None:
    """The one delivery's committed claims (`attempts`), None before it is committed."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT attempts FROM delivery")
            row = cursor.fetchone()
    return None if row is None else int(row[0])


def _the_delivery(pg_url: str) -> tuple[str, int, int, str]:
    """The one delivery's quarantine reason, claims, attempts recorded and last error."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT quarantine_reason, attempts, last_error,"
                " (SELECT count(*) FROM attempt) FROM delivery"
            )
            reason, attempts, last_error, recorded = cursor.fetchone()
    return reason, attempts, recorded, last_error


def _row(pg_url: str) -> tuple[object, ...] | None:
    """The one delivery's state, claims, lease and attempts recorded."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT status, attempts, lease_until, now() AT TIME ZONE 'UTC', last_error,"
                " (SELECT array_agg(error_class) FROM attempt) FROM delivery"
            )
            return cursor.fetchone()
