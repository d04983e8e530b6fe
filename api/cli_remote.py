"""`hookline endpoints|events|deliveries|quarantine|replays|keys|event-types|oauth-clients
...` and `hookline send`: a tenant's work over a running Hookline's API.

The API's URL comes from `HOOKLINE_API_URL` (default `http://127.0.0.1:8000`) and the key
from `HOOKLINE_API_KEY`; either may come from a profile file instead (`HOOKLINE_PROFILE`,
default `~/.config/hookline/profile.json`: `{"api_url": ..., "api_key": ...}`), which must
be readable by its owner only (mode 0600), as an SSH key must. A list prints a table, an
item its fields; `--json` prints the API's JSON for scripts. A refusal prints the API's
problem in one line, and the exit status says what kind it was (`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from api.cli_commands import NOUNS, SEND, Command
from api.cli_listen import DEFAULT_API_URL, Api, ApiError
from engine.errors import SettingsError

DEFAULT_PROFILE = "~/.config/hookline/profile.json"
# The exit status of a refusal, by HTTP status: scripts can tell them apart.
EXIT_CODES = {
    "usage": 2,
    "not found (404)": 3,
    "refused: credentials or scopes (401, 403)": 4,
    "invalid: the request (400, 409, 413, 415, 422)": 5,
    "unavailable: limited, down or unreachable (429, 5xx, no answer)": 6,
}
_TABLE_WIDTH = 48  # widest cell shown in a table; `--json` shows everything


def exit_code(status: int) -> int:
    """The exit status for an API refusal (or no answer, status 0)."""
    if status == 404:
        return 3
    if status in (401, 403):
        return 4
    if 400 <= status < 500 and status != 429:
        return 5
    return 6


def add_commands(commands: Any) -> None:
    """The nouns and `send`, on the CLI's subcommands; `replays` joins its existing group."""
    existing = {name: parser for name, parser in commands.choices.items()}
    for noun, (summary, verbs) in NOUNS.items():
        group = existing.get(noun)
        if group is None:
            group = commands.add_parser(noun, help=summary, description=summary, epilog=CONNECTION)
            group.set_defaults(group=group)
            subcommands = group.add_subparsers(dest=f"{noun}_command")
        else:
            subcommands = next(
                a for a in group._actions if isinstance(a, argparse._SubParsersAction)
            )
        for command in verbs:
            _add(subcommands, command)
    _add(commands, SEND)


CONNECTION = (
    "Talks to a running Hookline: HOOKLINE_API_URL (default http://127.0.0.1:8000) and "
    "HOOKLINE_API_KEY, or a profile file (HOOKLINE_PROFILE, default " + DEFAULT_PROFILE + ", "
    'mode 0600: {"api_url": ..., "api_key": ...}). Exit status: '
    + "; ".join(f"{code} {what}" for what, code in EXIT_CODES.items())
    + "."
)


def _add(subcommands: Any, command: Command) -> None:
    parser = subcommands.add_parser(
        command.verb,
        help=command.help,
        description=command.help,
        epilog=f"example:\n  {command.example}\n\n{CONNECTION}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in command.options:
        dest = option.flags[0].lstrip("-").replace("-", "_")
        kwargs: dict[str, Any] = {"help": option.help}
        if option.kind == "int":
            kwargs["type"] = int
        if option.kind == "list":
            kwargs["action"] = "append"
        if option.flags[0].startswith("--"):
            kwargs["dest"] = dest
            kwargs["required"] = option.required
        parser.add_argument(*option.flags, **kwargs)
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(handler=lambda settings, args: run(command, args))


def connection(environ: dict[str, str] | None = None) -> Api:
    """The API to talk to, from the environment or the profile file.

    Raises:
        SettingsError: no key, or a profile file others may read or that is not JSON.
    """
    env = os.environ if environ is None else environ
    profile = _profile(Path(env.get("HOOKLINE_PROFILE", DEFAULT_PROFILE)).expanduser())
    url = env.get("HOOKLINE_API_URL") or profile.get("api_url") or DEFAULT_API_URL
    key = env.get("HOOKLINE_API_KEY") or profile.get("api_key")
    if not key:
        raise SettingsError(
            "HOOKLINE_API_KEY", "set it, or api_key in the profile file, to a tenant's key"
        )
    return Api(str(url), str(key))


def _profile(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            "HOOKLINE_PROFILE", f"{path} holds a key: make it readable by you only (chmod 600)"
        )
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError("HOOKLINE_PROFILE", f"{path} is not a JSON object: {exc}") from None
    if not isinstance(found, dict):
        raise SettingsError("HOOKLINE_PROFILE", f"{path} is not a JSON object")
    return found


def request_of(
    command: Command, args: argparse.Namespace
) -> tuple[str, dict[str, Any] | None, dict[str, str]]:
    """The path (with its query), the JSON body and the headers a command's arguments make.

    Raises:
        ValueError: a JSON argument that is not JSON (or, for `--data`, not an object).
    """
    path_params: dict[str, str] = {}
    query: dict[str, Any] = {}
    body: dict[str, Any] = dict(command.body)
    headers: dict[str, str] = {}
    for option in command.options:
        value = getattr(args, option.flags[0].lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        if option.kind in ("json", "json_field"):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{option.flags[0]} is not JSON: {exc}") from None
        if option.kind == "json":
            if not isinstance(value, dict):
                raise ValueError(f"{option.flags[0]} must be a JSON object")
            body.update(value)
        elif option.to == "path":
            path_params[option.name] = quote(str(value), safe="")
        elif option.to == "query":
            query[option.name] = value
        elif option.to == "header":
            headers[option.name] = str(value)
        else:
            body[option.name] = value
    if command is SEND:
        body.setdefault("payload", {})
    path = command.path.format(**path_params)
    if query:
        path += "?" + urlencode(query)
    sends_body = command.method in ("POST", "PATCH")
    return path, body if sends_body else None, headers


def run(command: Command, args: argparse.Namespace, out: Callable[[str], Any] = print) -> int:
    """Make the command's request and print the answer; answer the exit status."""
    try:
        path, body, headers = request_of(command, args)
    except ValueError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 2
    api = connection()
    try:
        answer = api.call(command.method, path, body, headers=headers)
    except ApiError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return exit_code(exc.status)
    if args.json:
        out(json.dumps(answer, indent=2, ensure_ascii=False))
    elif answer is None:
        out("done")
    elif command.columns:
        out(table(answer.get("data", []), command.columns))
        if answer.get("next_cursor"):
            out(f"(more: --cursor {answer['next_cursor']})")
    else:
        out(fields(answer))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= _TABLE_WIDTH else text[: _TABLE_WIDTH - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table, one line a row, with a header."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines) + ("" if rows else "\n(none)")


def fields(item: dict[str, Any]) -> str:
    """An item as `name: value` lines; objects as compact JSON."""
    width = max((len(k) for k in item), default=0)
    shown = []
    for name, value in item.items():
        text = (
            json.dumps(value, ensure_ascii=False)
            if isinstance(value, dict | list)
            else _cell(value)
            if value is None
            else str(value)
        )
        shown.append(f"{name.ljust(width)}  {text}")
    return "\n".join(shown)
