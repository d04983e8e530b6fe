"""`hookline` and its command groups without a command: their help, never an argparse error."""

from __future__ import annotations

import pytest

from api.cli import main


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ("tenants", ("create", "suspend", "delete", "event-types")),
        ("replays", ("running", "cancel")),
        ("secrets", ("rotate-key",)),
    ],
)
def test_a_group_alone_prints_its_commands(
    group: str, commands: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group]) == 2

    printed = capsys.readouterr()
    assert printed.out.startswith(f"usage: hookline {group}")
    assert all(command in printed.out for command in commands)
    assert "required" not in printed.err


def test_the_help_says_where_the_configuration_comes_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2

    out = capsys.readouterr().out
    assert "HOOKLINE_* environment variables" in out
    assert "HOOKLINE_DATABASE_URL" in out and "HOOKLINE_BROKER_URL" in out
