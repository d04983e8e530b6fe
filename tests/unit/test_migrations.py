"""`hookline migrate` on SQLite: versioned, complete, safe to run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.db.connect import open_database
from engine.db.migrations import MIGRATIONS, current_version, latest_version, migrate
from engine.db.models import MODELS
from tests.factories import make_settings


def test_the_steps_are_numbered_one_by_one() -> None:
    assert [version for version, _, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_migrating_twice_applies_every_step_once(tmp_path: Path) -> None:
    database = open_database(make_settings(HOOKLINE_DATA_DIR=str(tmp_path)))
    assert migrate(database) == list(range(1, latest_version() + 1))
    assert migrate(database) == []
    with database.connection_context():
        assert current_version(database) == latest_version()


def test_the_migrated_schema_holds_every_column_the_models_map(tmp_path: Path) -> None:
    database = open_database(make_settings(HOOKLINE_DATA_DIR=str(tmp_path)))
    migrate(database)
    with database.connection_context():
        for model in MODELS:
            table = model._meta.table_name
            columns = {column.name for column in database.get_columns(table)}
            mapped = {field.column_name for field in model._meta.sorted_fields}
            assert mapped <= columns, f"{table} lacks {mapped - columns}"


def test_the_migrate_command_reports_what_it_applied(tmp_path: Path) -> None:
    env = {**os.environ, "HOOKLINE_DATA_DIR": str(tmp_path)}
    env = {k: v for k, v in env.items() if k not in ("HOOKLINE_DATABASE_URL",)}

    def run() -> list[int]:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return list(json.loads(done.stdout.strip().splitlines()[-1])["applied"])

    assert run() == list(range(1, latest_version() + 1))
    assert run() == []
    assert (tmp_path / "hookline.db").exists()
