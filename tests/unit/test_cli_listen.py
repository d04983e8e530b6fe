"""`hookline listen`'s own logic: what it answers, prints and refuses, without a Hookline."""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

import pytest

from api import cli
from api.cli_listen import ApiError, Listener
from engine import signing


def listener(**options: Any) -> Listener:
    defaults = {"host": "127.0.0.1", "port": 0, "count": 0, "json": True, "forward_to": None}
    made = Listener(argparse.Namespace(**{**defaults, **options}))
    made.secret = signing.generate_secret()
    return made


def signed(secret: str, body: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    return signing.webhook_headers([secret], "evt_1", int(time.time()), raw), raw


def test_a_delivery_is_printed_verified_and_answered_200(
    capsys: pytest.CaptureFixture[str],
) -> None:
    one = listener()
    headers, body = signed(one.secret, {"type": "invoice.paid", "data": {"n": 1}})

    status, answer = one.take(headers, body)

    printed = json.loads(capsys.readouterr().out)
    assert (status, answer) == (200, b"")
    assert (printed["type"], printed["webhook_id"], printed["verified"]) == (
        "invoice.paid",
        "evt_1",
        True,
    )


def test_a_bad_signature_is_printed_as_such_and_still_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    one = listener()
    headers, body = signed(signing.generate_secret(), {"type": "invoice.paid", "data": {}})

    status, _ = one.take(headers, body)

    printed = json.loads(capsys.readouterr().out)
    assert status == 200
    assert printed["verified"] is False and "no signature matches" in printed["verification_error"]


def test_a_verification_challenge_is_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    one = listener()
    challenge = {"type": "webhook.verification", "data": {"challenge": "c-123"}}

    status, answer = one.take(*signed(one.secret, challenge))

    assert (status, json.loads(answer)) == (200, {"challenge": "c-123"})


def test_the_count_stops_it(capsys: pytest.CaptureFixture[str]) -> None:
    one = listener(count=2)
    for _ in range(2):
        one.take(*signed(one.secret, {"type": "a.b", "data": {}}))

    assert one.done.is_set()


class Refusing:
    def call(self, method: str, path: str, body: Any = None) -> Any:
        detail = "address 127.0.0.1 is loopback; an operator can allow it with ..."
        raise ApiError(422, {"detail": detail, "field": "url"})


def test_a_hookline_that_refuses_loopback_is_explained_not_worked_around() -> None:
    one = listener()
    try:
        with pytest.raises(ApiError) as raised:
            one.register(Refusing(), "*")  # type: ignore[arg-type]
    finally:
        one.close()

    assert "does not deliver to this machine's address" in str(raised.value)
    assert "address 127.0.0.1 is loopback" in str(raised.value)
    assert "never weakens the guard" in str(raised.value)


def test_without_a_key_it_says_which_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HOOKLINE_API_KEY", raising=False)

    code = cli.main(["listen"])

    assert code == 1
    assert "HOOKLINE_API_KEY" in capsys.readouterr().err


def test_a_port_already_taken_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOOKLINE_API_KEY", "hk_test")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = cli.main(["listen", "--port", str(port)])

    assert code == 1
    err = capsys.readouterr().err
    assert "cannot listen there" in err and "Traceback" not in err


def test_the_up_banner_names_hookline_as_this_process_was_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Under tox the script is not on the PATH: the banner names its path from here."""
    script = tmp_path / ".tox" / "up" / "bin" / "hookline"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script)])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli._this_command() == ".tox/up/bin/hookline"

    monkeypatch.setattr("sys.argv", ["/somewhere/api/cli.py"])
    assert cli._this_command().endswith(" -m api.cli")
