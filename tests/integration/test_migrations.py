"""`hookline migrate` on PostgreSQL: safe to run twice, and from two hosts at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest

from engine.db.migrations import latest_version
from tests.services import new_database

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]


def test_two_migrators_at_once_then_a_third_apply_every_step_exactly_once() -> None:
    with new_database("_migrate") as url:
        env = {**os.environ, "HOOKLINE_DATABASE_URL": url}
        command = [sys.executable, "-m", "api.cli", "migrate"]
        runs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
        ]
        applied = []
        for run in runs:
            out, _ = run.communicate(timeout=60)
            assert run.returncode == 0
            applied.append(json.loads(out.strip().splitlines()[-1])["applied"])
        assert sorted(applied, key=len) == [[], list(range(1, latest_version() + 1))]
        again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        assert json.loads(again.stdout.strip().splitlines()[-1])["applied"] == []
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT version FROM schema_version ORDER BY version")
            assert [row[0] for row in cursor.fetchall()] == list(range(1, latest_version() + 1))
