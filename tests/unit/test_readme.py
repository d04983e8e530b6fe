"""The README stays true: its settings table and its quick start."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ops"))

import settings_table  # noqa: E402


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    start = "<!-- settings-table"
    text = readme()
    block = text[text.index(start) : text.index("<!-- /settings-table -->")]
    table = block[block.index("\n") + 1 :]
    assert table == settings_table.markdown()


def test_the_quick_start_is_two_commands_one_runs_hookline_one_runs_the_tests() -> None:
    text = readme()
    section = text[text.index("## Quick start") : text.index("## Production set-up")]
    first_block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["tox -e up", "tox -e py"]
    tox = (ROOT / "tox.ini").read_text()
    assert "[testenv:up]" in tox and "commands = hookline up" in tox
    assert "commands = python -m tests.passes" in tox
    ci = (ROOT / ".ci" / "run").read_text()
    assert '"$TOX" run-parallel -e lint,py' in ci, "CI runs the README's test command"
