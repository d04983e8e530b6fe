"""Print the README's settings table from `engine.settings.Settings` and its comments.

    python ops/settings_table.py > /tmp/table.md

`tests/unit/test_readme.py` checks the README holds exactly this table.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.settings import PREFIX, Settings

_FIELD = re.compile(r"^    (\w+): .*?(?:= (.+))?$")


def rows() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("# "):
            pending.append(stripped[2:])
            continue
        match = _FIELD.match(line)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    table = []
    for spec in dataclasses.fields(Settings):
        default = spec.default
        table.append((PREFIX + spec.name.upper(), _show(default), comments.get(spec.name, "")))
    return table


def _show(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "false" if not value else "true"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if value else "(empty)"
    return str(value)


def markdown() -> str:
    """The table as Markdown."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default}` | {text} |" for name, default, text in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
