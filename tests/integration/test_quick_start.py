"""The README's quick start, walked as written: its "Try it" commands, taken from the README
and run against `hookline up`, with `hookline listen` receiving the webhook."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import eventually
from tests.integration.test_embedded import hookline_up

pytestmark = [pytest.mark.integration, pytest.mark.without_rabbitmq]

README = Path(__file__).resolve().parents[2] / "README.md"


def try_it_blocks() -> list[str]:
    """The shell blocks of the quick start after the two commands."""
    text = README.read_text()
    section = text[text.index("## Quick start") : text.index("## Production set-up")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[1:]


def as_here(block: str, port: int) -> str:
    """The block as this checkout runs it: the CLI by module, the API on the test's port."""
    return block.replace(".tox/up/bin/hookline", f"{sys.executable} -m api.cli").replace(
        "localhost:8000", f"127.0.0.1:{port}"
    )


def test_the_quick_start_as_written_shows_a_signed_webhook_arriving(tmp_path: Path) -> None:
    run, asks = try_it_blocks()
    terminal_1, terminal_2 = run.split("# terminal 2")
    assert [line for line in terminal_1.splitlines() if line and line[0] != "#"] == [
        "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS=true tox -e up"
    ], "what `hookline_up` runs: the embedded mode, loopback allowed"

    with hookline_up(tmp_path) as (api, env, cwd):
        port = int(api.base_url.rsplit(":", 1)[1])
        client_env = {k: v for k, v in env.items() if not k.startswith("HOOKLINE_")}
        client_env["HOOKLINE_API_URL"] = api.base_url  # listen's default, on the test's port
        # Terminal 2 typed as a reader types it: the commands up to `listen ... &`, then, once
        # it says it is listening, the rest; then what the shell holds for the next commands.
        before, after = as_here(terminal_2, port).split("&\n", 1)
        output = tmp_path / "terminal-2.txt"
        with open(output, "w") as out:
            shell = subprocess.Popen(
                ["bash", "-e"],
                cwd=cwd,
                env=client_env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        assert shell.stdin is not None
        try:
            shell.stdin.write(before + "&\n")
            shell.stdin.flush()
            eventually(lambda: "listening on" in output.read_text(), 30)
            shell.stdin.write(after + '\necho "$ID" > event_id; echo "$HOOKLINE_API_KEY" > key\n')
            shell.stdin.flush()
            eventually(lambda: (cwd / "key").exists(), 30)
            seen = eventually(
                lambda: "--> invoice.paid" in output.read_text() and output.read_text(), 60
            )
            event_id = (cwd / "event_id").read_text().strip()
            key = (cwd / "key").read_text().strip()
            shell.stdin.write("kill %1; wait\n")  # as Ctrl-C: listen deletes its endpoint
            shell.stdin.close()
            shell.wait(timeout=30)
        finally:
            if shell.poll() is None:
                os.killpg(shell.pid, signal.SIGKILL)
        asked = subprocess.run(
            ["bash", "-ec", as_here(asks, port)],
            cwd=cwd,
            env={**client_env, "ID": event_id, "HOOKLINE_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert event_id.startswith("evt_")
    assert f"--> invoice.paid {event_id} (signature verified)" in seen
    assert '"invoice": "in_42"' in seen, "the body, pretty-printed"
    event, deliveries = documents(asked.stdout)
    assert event["id"] == event_id
    assert [d["status"] for d in deliveries["data"]] == ["succeeded"]
    assert "deleted the temporary endpoint" in output.read_text()


def documents(text: str) -> list[object]:
    """The JSON documents curl printed one after another (no newline between them)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found
