"""`hookline listen`: a local receiver for development, against a running Hookline.

It serves HTTP on this machine, registers a temporary endpoint there for the event types
asked (or listens where an existing endpoint points), and prints every delivery it gets:
the headers, the body pretty-printed, and whether its Standard Webhooks signature verifies
with the endpoint's secret. With `--forward-to` it also sends each delivery on to a local
URL and answers Hookline with that answer, so a failing local app is retried as a real
receiver would be. It talks to Hookline over its API (`HOOKLINE_API_URL`, `HOOKLINE_API_KEY`).

Loopback is refused by Hookline's SSRF guard unless its operator allowed it; `listen` says
so and stops rather than ask for the guard to be weakened. A temporary endpoint is deleted
when `listen` stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from engine import signing
from engine.errors import SettingsError
from engine.settings import Settings

DEFAULT_API_URL = "http://127.0.0.1:8000"
PATH = "/hookline-listen"
FORWARD_TIMEOUT_S = 30.0
EXAMPLE = """example:
  export HOOKLINE_API_KEY=hk_...
  hookline listen --events 'invoice.*' --forward-to http://localhost:3000/hooks

Hookline must be allowed to deliver to loopback, as in development:
  HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS=true hookline up
"""


class ApiError(Exception):
    """The API answered a problem (or nothing); `str` is one line for the terminal."""

    def __init__(self, status: int, problem: dict[str, Any] | None, reason: str = "") -> None:
        self.status = status
        self.problem = problem or {}
        detail = self.problem.get("detail") or self.problem.get("title") or reason
        field = self.problem.get("field")
        super().__init__(f"HTTP {status}: {detail}" + (f" (field {field})" if field else ""))


class Api:
    """Hookline's API with a tenant's key: JSON in, JSON out."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON (None when empty).

        Raises:
            ApiError: a 4xx or 5xx, or no answer.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw) if raw else None
            except ValueError:
                problem = None
            raise ApiError(exc.code, problem, exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, None, f"no answer from {self.base_url}: {exc}") from None
        return json.loads(raw) if raw else None


def add_command(commands: Any) -> None:
    """`hookline listen`, on the CLI's subcommands."""
    listen = commands.add_parser(
        "listen",
        help="receive webhooks on this machine and print them (development)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = listen.add_mutually_exclusive_group()
    target.add_argument(
        "--events",
        default="*",
        help="event types for a temporary endpoint, comma-separated (default: all)",
    )
    target.add_argument("--endpoint", help="listen where this existing endpoint points instead")
    listen.add_argument("--forward-to", metavar="URL", help="send each delivery on to this URL")
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on")
    listen.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    listen.add_argument("--count", type=int, default=0, help="stop after this many deliveries")
    listen.add_argument("--json", action="store_true", help="one JSON object per delivery")
    listen.set_defaults(handler=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Listen until interrupted (or `--count` deliveries); answer the exit status."""
    key = os.environ.get("HOOKLINE_API_KEY")
    if not key:
        raise SettingsError("HOOKLINE_API_KEY", "`hookline listen` needs a tenant's API key")
    api = Api(os.environ.get("HOOKLINE_API_URL", DEFAULT_API_URL), key)
    listener = Listener(args)
    try:
        if args.endpoint:
            listener.adopt(api, args.endpoint)
        else:
            listener.register(api, args.events)
    except ApiError as exc:
        listener.close()
        _say(f"hookline listen: {exc}")
        return 2 if 400 <= exc.status < 500 else 1
    except OSError as exc:  # the address to listen on is taken, or not this machine's
        listener.close()
        _say(f"hookline listen: cannot listen there: {exc}")
        return 1
    _say(
        f"listening on {listener.url} for endpoint {listener.endpoint_id}"
        + (f", forwarding to {args.forward_to}" if args.forward_to else "")
        + " (Ctrl-C stops)"
    )
    signal.signal(signal.SIGTERM, lambda _signum, _frame: listener.done.set())
    try:
        listener.serve()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        if listener.temporary:
            try:
                api.call("DELETE", f"/v1/endpoints/{listener.endpoint_id}")
                _say(f"deleted the temporary endpoint {listener.endpoint_id}")
            except ApiError as exc:
                _say(f"could not delete endpoint {listener.endpoint_id}: {exc}")
    return 0


class Listener:
    """The local HTTP server and what it knows of its endpoint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.endpoint_id = ""
        self.secret = ""
        self.temporary = False
        self.received = 0
        self.done = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.path = PATH

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def _bind(self, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"listener": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True

    def register(self, api: Api, events: str) -> None:
        """Serve on a free port and register a temporary endpoint there."""
        self._bind(self.args.host, self.args.port)
        types = [t.strip() for t in events.split(",") if t.strip() and t.strip() != "*"]
        body: dict[str, Any] = {"url": self.url, "description": "hookline listen (temporary)"}
        if types:
            body["event_types"] = types
        try:
            created = api.call("POST", "/v1/endpoints", body)
        except ApiError as exc:
            if exc.problem.get("field") == "url":
                raise ApiError(
                    exc.status,
                    {
                        "detail": "this Hookline does not deliver to this machine's address:"
                        f" {exc.problem.get('detail')}. Allow it on a development instance;"
                        " listen never weakens the guard itself",
                        "field": "url",
                    },
                ) from None
            raise
        self.endpoint_id, self.secret, self.temporary = created["id"], created["secret"], True

    def adopt(self, api: Api, endpoint_id: str) -> None:
        """Serve where an existing endpoint points (its host must be this machine)."""
        endpoint = api.call("GET", f"/v1/endpoints/{endpoint_id}")
        self.secret = api.call("GET", f"/v1/endpoints/{endpoint_id}/secret")["secret"]
        parts = urlsplit(endpoint["url"])
        if parts.scheme != "http" or parts.hostname is None:
            raise ApiError(400, {"detail": f"{endpoint['url']} is not a local http:// URL"})
        self.path = parts.path or "/"
        self._bind(parts.hostname, parts.port or 80)
        self.endpoint_id = endpoint_id

    def serve(self) -> None:
        """Serve until `done` (the count reached, or SIGTERM); Ctrl-C raises out of it."""
        assert self.server is not None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        while not self.done.wait(0.2):
            pass

    def close(self) -> None:
        if self.server is None:
            return
        if self.thread is not None:
            self.server.shutdown()  # returns once serve_forever has
        self.server.server_close()

    def take(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Print one delivery (and forward it); answer the status and body to give Hookline."""
        try:
            signing.verify(self.secret, headers, body, now=int(time.time()))
            verified, why = True, None
        except Exception as exc:  # noqa: BLE001 - shown, not raised: a bad one is printed too
            verified, why = False, str(exc)
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body.decode(errors="replace")
        status, answer = 200, b""
        forwarded = None
        if isinstance(parsed, dict) and parsed.get("type") == "webhook.verification" and verified:
            answer = json.dumps({"challenge": parsed["data"]["challenge"]}).encode()
        elif self.args.forward_to:
            status, answer, forwarded = _forward(self.args.forward_to, headers, body)
        _show(self.args.json, headers, parsed, verified, why, forwarded)
        self.received += 1
        if self.args.count and self.received >= self.args.count:
            self.done.set()
        return status, answer


class _Handler(BaseHTTPRequestHandler):
    listener: Listener

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.listener.take(dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # each delivery is printed by `take`


def _forward(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, Any]]:
    """Send the delivery on; answer its status and body, and what to print of it."""
    kept = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    request = urllib.request.Request(url, data=body, headers=kept, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT_S) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 502, b"", {"url": url, "error": str(exc)}
    return (
        status,
        answer,
        {"url": url, "status": status, "body": answer[:2000].decode("utf-8", "replace")},
    )


def _show(
    as_json: bool,
    headers: dict[str, str],
    body: Any,
    verified: bool,
    why: str | None,
    forwarded: dict[str, Any] | None,
) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    line: dict[str, Any] = {
        "webhook_id": lowered.get("webhook-id"),
        "type": body.get("type") if isinstance(body, dict) else None,
        "verified": verified,
        "headers": lowered,
        "body": body,
    }
    if why:
        line["verification_error"] = why
    if forwarded is not None:
        line["forwarded"] = forwarded
    if as_json:
        print(json.dumps(line), flush=True)
        return
    mark = "signature verified" if verified else f"SIGNATURE NOT VERIFIED: {why}"
    print(f"--> {line['type']} {line['webhook_id']} ({mark})")
    for name in sorted(lowered):
        print(f"    {name}: {lowered[name]}")
    print(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    if forwarded is not None:
        print(f"<-- {forwarded.get('status', 'no answer')} from {forwarded['url']}")
    sys.stdout.flush()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
