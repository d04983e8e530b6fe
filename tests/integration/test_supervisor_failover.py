"""Two `hookline supervisor` processes on real PostgreSQL and RabbitMQ: every outcome counted
once and every alert sent once, and after a kill -9 of one (between its fold's commit and
its ack, the moment that used to count a batch twice) the other carries on, losing nothing.

The breakers' counts are checked against the attempt rows: per endpoint, the window's
successes and failures (a window of an hour, so nothing is pruned) equal the attempts
made, and never exceed them while the test runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from standardwebhooks.webhooks import Webhook

from tests.factories import eventually
from tests.integration.conftest import Api, Processes, free_port
from tests.integration.faults import isolated_stack, send_events
from tests.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALERT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {
    "HOOKLINE_BREAKER_WINDOW_S": "3600",  # nothing leaves the window during a test
    "HOOKLINE_BREAKER_MIN_ATTEMPTS": "10",
    # Once open, a failing endpoint stays quiet (no probe) for the rest of the test, so the
    # attempts stop changing and the window can be compared with them.
    "HOOKLINE_BREAKER_COOLDOWN_S": "120",
    "HOOKLINE_BREAKER_MAX_COOLDOWN_S": "120",
    "HOOKLINE_RETRY_SCHEDULE_S": ",".join(["2"] * 40),
    "HOOKLINE_PUBLIC_URL": "http://hookline.invalid",  # only written into links
    "HOOKLINE_DB_MAX_CONNECTIONS": "4",  # PostgreSQL is shared with other runs
}
SUPERVISORS = ("supervisor-a", "supervisor-b")


def start_supervisors(processes: Processes) -> None:
    """Two supervisors, each with its own metrics port, logging every batch it folds."""
    for name in SUPERVISORS:
        processes.start(
            "supervisor",
            name=name,
            env={
                "HOOKLINE_SUPERVISOR_METRICS_BIND": f"127.0.0.1:{free_port()}",
                "HOOKLINE_LOG_LEVEL": "debug",
            },
        )


def new_endpoint(api: Api, key: str, url: str) -> str:
    status, body = api.call("POST", "/v1/endpoints", {"url": url}, key=key)
    assert status == 201, body
    return str(body["id"])


def query(pg_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(psycopg2.connect(pg_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []


def attempts_and_counts(
    pg_url: str,
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Per endpoint: (successes, failures) in the attempt rows, and in the breaker's window."""
    made = query(
        pg_url,
        "SELECT d.endpoint_id, count(*) FILTER (WHERE a.outcome = 'success'),"
        " count(*) FILTER (WHERE a.outcome <> 'success')"
        " FROM attempt a JOIN delivery d ON d.id = a.delivery_id GROUP BY d.endpoint_id",
    )
    counted = query(
        pg_url,
        "SELECT endpoint_id, sum(successes), sum(failures) FROM endpoint_health_bucket"
        " GROUP BY endpoint_id",
    )
    return (
        {row[0]: (int(row[1]), int(row[2])) for row in made},
        {row[0]: (int(row[1]), int(row[2])) for row in counted},
    )


def counted_once(pg_url: str) -> bool:
    """True when the window holds every attempt; fails at once if it holds one twice."""
    made, counted = attempts_and_counts(pg_url)
    for endpoint_id, (ok, failed) in counted.items():
        have = made.get(endpoint_id, (0, 0))
        assert ok <= have[0] and failed <= have[1], (
            f"{endpoint_id}: counted {ok}/{failed}, attempted {have[0]}/{have[1]}"
        )
    return bool(made) and counted == made


def folds_logged(processes: Processes, name: str) -> int:
    text = (processes.logs / f"{name}.log").read_text(errors="replace")
    return text.count('"outcomes_supervised"')


def first_fold_after(processes: Processes, name: str, since: float) -> float | None:
    """Seconds from `since` (Unix time) to the first batch the process folded or skipped."""
    for line in (processes.logs / f"{name}.log").read_text(errors="replace").splitlines():
        if '"outcomes_supervised"' not in line and '"outcomes_redelivered"' not in line:
            continue
        at = dt.datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        if at >= since:
            return at - since
    return None


def test_two_supervisors_count_every_outcome_once_and_send_every_alert_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    with Receiver() as slack:
        receiver.script("/down", default=500)
        env = {
            **ENV,
            "HOOKLINE_ALERT_SLACK_WEBHOOK_URL": slack.url("/slack"),
            "HOOKLINE_ALERT_WEBHOOK_URL": receiver.url("/alerts"),
            "HOOKLINE_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
        }
        with isolated_stack(tmp_path, **env) as (api, processes, pg_url, _):
            start_supervisors(processes)
            key = api.tenant()
            failing = [new_endpoint(api, key, receiver.url("/down")) for _ in range(3)]
            for _ in range(2):
                new_endpoint(api, key, receiver.url("/up"))
            for _ in range(6):  # a batch every half second or so, for both supervisors
                send_events(api, key, 5)
                time.sleep(0.5)

            receiver.wait_for("/alerts", len(failing), timeout_s=45)
            slack.wait_for("/slack", len(failing), timeout_s=20)
            eventually(lambda: counted_once(pg_url), 30)
            time.sleep(3)  # time for a duplicate to show up
            eventually(lambda: counted_once(pg_url), 30)
            folded = {name: folds_logged(processes, name) for name in SUPERVISORS}
            made, _ = attempts_and_counts(pg_url)

        alerts = [
            Webhook(ALERT_SECRET).verify(r.body, r.headers) for r in receiver.received("/alerts")
        ]
        slacked = len(slack.received("/slack"))
    print(f"\ntwo supervisors: batches folded {folded}, attempts {made}, slack {slacked}")
    assert all(folded.values()), f"both supervisors folded batches: {folded}"
    assert sorted(a["data"]["endpoint_id"] for a in alerts) == sorted(failing)
    assert {a["type"] for a in alerts} == {"endpoint.failing"}
    assert slacked == len(failing)


PAUSE_COMMITS = [
    # A fold's commit sleeps while `test_pause` says so: a kill -9 then lands after the
    # fold was decided and before the ack, as a supervisor killed at the worst moment.
    "CREATE TABLE test_pause (sleep_s DOUBLE PRECISION NOT NULL)",
    """CREATE FUNCTION test_pause_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(COALESCE((SELECT max(sleep_s) FROM test_pause), 0));
    RETURN NULL;
END $$""",
    "CREATE CONSTRAINT TRIGGER test_pause_commit AFTER INSERT OR UPDATE"
    " ON endpoint_health_bucket DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
    " EXECUTE FUNCTION test_pause_commit()",
]


def committing_port(pg_url: str) -> int | None:
    """The client port of a connection whose commit is sleeping in the pause, if any."""
    rows = query(
        pg_url,
        "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event = 'PgSleep' AND query = 'COMMIT'",
    )
    return int(rows[0][0]) if rows else None


def holder_of(port: int, processes: Processes, names: tuple[str, ...]) -> str:
    """Which of the named processes (with its children) holds the TCP socket from `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for name in names:
        group = processes.children[name].pid
        for pid in _group_members(group):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    match = re.fullmatch(r"socket:\[(\d+)\]", link)
                    if match and match.group(1) in inodes:
                        return name
    raise AssertionError(f"no process of {names} holds port {port}")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    members.append(int(entry))
    return members


def test_after_a_kill_9_between_fold_and_ack_the_other_supervisor_carries_on_counting_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/down", default=500)
    with isolated_stack(tmp_path, **ENV) as (api, processes, pg_url, _):
        for statement in PAUSE_COMMITS:
            query(pg_url, statement)
        start_supervisors(processes)
        key = api.tenant()
        down = new_endpoint(api, key, receiver.url("/down"))
        new_endpoint(api, key, receiver.url("/up"))
        send_events(api, key, 10)
        eventually(lambda: counted_once(pg_url), 30)  # both supervisors are consuming

        query(pg_url, "INSERT INTO test_pause VALUES (5)")
        send_events(api, key, 10)
        port = eventually(lambda: committing_port(pg_url), 20)
        query(pg_url, "DELETE FROM test_pause")
        victim = holder_of(port, processes, SUPERVISORS)
        [survivor] = [name for name in SUPERVISORS if name != victim]
        processes.stop(victim, signal.SIGKILL)
        killed_at = time.time()

        # The survivor carries on: the dead one's batch, then a fresh endpoint's outcomes.
        fresh = new_endpoint(api, key, receiver.url("/fresh"))
        send_events(api, key, 5)

        def fresh_counted() -> bool:
            made, counted = attempts_and_counts(pg_url)
            return fresh in made and counted.get(fresh) == made[fresh]

        eventually(fresh_counted, 30)
        fresh_s = time.time() - killed_at
        carried_on_s = first_fold_after(processes, survivor, killed_at)
        carried_on_s = round(carried_on_s, 1) if carried_on_s is not None else None
        eventually(lambda: counted_once(pg_url), 30)
        made, _ = attempts_and_counts(pg_url)
        state = query(pg_url, "SELECT state FROM endpoint_health WHERE endpoint_id = %s", down)
        survivor_log = (processes.logs / f"{survivor}.log").read_text(errors="replace")
        redelivered = survivor_log.count('"outcomes_redelivered"')
    print(
        f"\nkill -9 of {victim} mid-commit: {survivor} folded its next batch {carried_on_s} s"
        f" after, a fresh endpoint's outcomes counted {fresh_s:.1f} s after; redelivered"
        f" batches skipped {redelivered}; attempts {made}"
    )
    assert carried_on_s is not None and carried_on_s <= 10.0
    assert redelivered >= 1, "the killed supervisor's batch came back and was skipped"
    assert state == [("open",)]
