"""What a process checks when it starts: a database migrated to its schema, and a RabbitMQ that
lets it in. Each failure is one line naming the setting, not a traceback loop; an outage of
either is left to the processes to wait out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from actors.registry import check_queues
from engine.db.migrations import latest_version
from engine.errors import SettingsError
from tests.factories import make_settings
from tests.integration.conftest import stack_env
from tests.services import AMQP_HOST, amqp_url_for, new_database, new_vhost

pytestmark = [pytest.mark.integration, pytest.mark.own_queue_types]


def start(role: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`hookline ROLE` as an operator starts it; it is expected to stop by itself."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", role],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def said(done: subprocess.CompletedProcess[str]) -> tuple[dict[str, object], list[str]]:
    """A stopped process's start-up line (its first, JSON: not a terminal), and the rest."""
    first, *rest = done.stderr.strip().splitlines()
    return json.loads(first), rest


def test_a_vhost_that_does_not_exist_fails_the_start_in_one_line() -> None:
    with new_vhost(f"-r{time.monotonic_ns() % 10**8}") as existing:  # RabbitMQ is there
        missing = f"{existing}-never-made"
        url = amqp_url_for(missing)
        with pytest.raises(SettingsError) as raised:
            check_queues(make_settings(HOOKLINE_BROKER_URL=url))
        assert raised.value.variable == "HOOKLINE_BROKER_URL"
        assert "refused the virtual host" in str(raised.value)
        assert "rabbitmqctl add_vhost" in str(raised.value)

        done = start("scheduler", stack_env("postgresql://postgres@127.0.0.1:1/none", url))
    starting, rest = said(done)
    assert done.returncode == 1
    assert (starting["event"], starting["role"], starting["broker"]) == (
        "hookline_starting",
        "scheduler",
        f"amqp://guest:***@{AMQP_HOST}/{quote(missing, safe='')}",
    ), "where it runs, the password masked"
    assert rest == [
        f"hookline: HOOKLINE_BROKER_URL: RabbitMQ at amqp://guest:***@{AMQP_HOST}/"
        f"{quote(missing, safe='')} refused the virtual host: create it (rabbitmqctl add_vhost)"
        " and give the user access to it (rabbitmqctl set_permissions), or fix its name in"
        " the URL"
    ], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_wrong_password_fails_the_start_without_printing_it() -> None:
    with new_vhost(f"-p{time.monotonic_ns() % 10**8}") as vhost:
        url = amqp_url_for(vhost).replace("guest:guest@", "guest:not-the-password@")
        with pytest.raises(SettingsError) as raised:
            check_queues(make_settings(HOOKLINE_BROKER_URL=url))

    assert "refused the user name or password" in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    assert "guest:***@" in str(raised.value)


def test_rabbitmq_down_is_left_to_the_processes_to_wait_out() -> None:
    # A port nothing listens on: an outage, which each process waits out itself.
    check_queues(make_settings(HOOKLINE_BROKER_URL="amqp://guest:guest@127.0.0.1:1/%2F"))


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_a_database_not_yet_migrated_fails_the_start_in_one_line(role: str) -> None:
    with (
        new_database(f"_unmigrated_{role}") as pg_url,
        new_vhost(f"-m{time.monotonic_ns() % 10**8}") as vhost,
    ):
        done = start(role, stack_env(pg_url, amqp_url_for(vhost)))

    starting, rest = said(done)
    assert done.returncode == 1
    assert (starting["role"], starting["database"], starting["queue_type"]) == (
        role,
        pg_url,
        "classic",
    )
    assert rest == [
        f"hookline: HOOKLINE_DATABASE_URL: the database at {pg_url} is at schema version 0 of"
        f" {latest_version()}: run `hookline migrate` first"
    ], done.stderr
