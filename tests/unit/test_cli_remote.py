"""`hookline` over the API (`api.cli_remote`): requests made, exit codes, output, profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api import cli
from api.cli_commands import NOUNS, SEND, Command
from api.cli_remote import connection, exit_code, fields, request_of, table
from engine.errors import SettingsError


def command(noun: str, verb: str) -> Command:
    return next(c for c in NOUNS[noun][1] if c.verb == verb)


def parsed(*argv: str) -> Any:
    return cli._parser().parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "noun_verb", "expected"),
    [
        (
            (
                "endpoints",
                "create",
                "--url",
                "https://e.com/h",
                "--event-type",
                "a.*",
                "--event-type",
                "b.c",
            ),
            ("endpoints", "create"),
            ("/v1/endpoints", {"url": "https://e.com/h", "event_types": ["a.*", "b.c"]}, {}),
        ),
        (
            (
                "endpoints",
                "update",
                "ep_1",
                "--data",
                '{"rate_limit_per_s": 20}',
                "--description",
                "d",
            ),
            ("endpoints", "update"),
            ("/v1/endpoints/ep_1", {"rate_limit_per_s": 20, "description": "d"}, {}),
        ),
        (
            ("deliveries", "list", "--status", "quarantined", "--limit", "5"),
            ("deliveries", "list"),
            ("/v1/deliveries?limit=5&status=quarantined", None, {}),
        ),
        (
            ("event-types", "get", "invoice/paid"),
            ("event-types", "get"),
            ("/v1/event-types/invoice%2Fpaid", None, {}),
        ),
        (
            ("event-types", "create", "invoice.paid", "--schema", '{"type": "object"}'),
            ("event-types", "create"),
            ("/v1/event-types", {"name": "invoice.paid", "schema": {"type": "object"}}, {}),
        ),
        (
            ("endpoints", "enable", "ep_1"),
            ("endpoints", "enable"),
            ("/v1/endpoints/ep_1/enable", {"replay": True}, {}),
        ),
    ],
)
def test_each_command_makes_its_request(
    argv: tuple[str, ...], noun_verb: tuple[str, str], expected: tuple[Any, ...]
) -> None:
    assert request_of(command(*noun_verb), parsed(*argv)) == expected


def test_send_is_a_producers_post_with_its_idempotency_key() -> None:
    args = parsed("send", "invoice.paid", "--data", '{"n": 1}', "--idempotency-key", "k-1")
    bare = parsed("send", "ping")

    assert request_of(SEND, args) == (
        "/v1/events",
        {"event_type": "invoice.paid", "payload": {"n": 1}},
        {"Idempotency-Key": "k-1"},
    )
    assert request_of(SEND, bare)[1] == {"event_type": "ping", "payload": {}}


def test_json_that_is_not_json_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="--data is not JSON"):
        request_of(SEND, parsed("send", "a.b", "--data", "{nope"))
    with pytest.raises(ValueError, match="must be a JSON object"):
        request_of(
            command("endpoints", "update"), parsed("endpoints", "update", "e", "--data", "[1]")
        )


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, 3), (401, 4), (403, 4), (422, 5), (409, 5), (429, 6), (503, 6), (0, 6)],
)
def test_exit_codes_say_what_kind_of_refusal(status: int, code: int) -> None:
    assert exit_code(status) == code


def test_every_command_has_an_example_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    for noun, (_summary, verbs) in NOUNS.items():
        for verb in verbs:
            with pytest.raises(SystemExit):
                cli.main([noun, verb.verb, "--help"])
            shown = capsys.readouterr().out
            assert "example:\n  hookline " in shown, (noun, verb.verb)
            assert "HOOKLINE_API_URL" in shown


def test_a_table_for_people_and_an_item_as_fields() -> None:
    rows = [{"id": "ep_1", "url": "https://e.com/" + "x" * 60, "event_types": ["a", "b"]}]

    shown = table(rows, ("id", "url", "event_types", "paused"))

    assert shown.splitlines()[0].split() == ["ID", "URL", "EVENT_TYPES", "PAUSED"]
    assert "…" in shown and "a,b" in shown and shown.splitlines()[1].endswith("-")
    assert table([], ("id",)).endswith("(none)")
    assert fields({"id": "ep_1", "headers": {"X": "1"}}) == 'id       ep_1\nheaders  {"X": "1"}'


def test_the_profile_gives_url_and_key_unless_the_environment_does(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"api_url": "http://h:1", "api_key": "hk_profile"}))
    profile.chmod(0o600)

    from_file = connection({"HOOKLINE_PROFILE": str(profile)})
    from_env = connection({"HOOKLINE_PROFILE": str(profile), "HOOKLINE_API_KEY": "hk_env"})

    assert (from_file.base_url, from_file.key) == ("http://h:1", "hk_profile")
    assert (from_env.base_url, from_env.key) == ("http://h:1", "hk_env")
    profile.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        connection({"HOOKLINE_PROFILE": str(profile)})
    with pytest.raises(SettingsError, match="HOOKLINE_API_KEY"):
        connection({"HOOKLINE_PROFILE": str(tmp_path / "none.json")})
