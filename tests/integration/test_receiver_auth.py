"""Deliveries that authenticate to their receiver (issue 19 §3), on the real worker.

The test's own servers on loopback: an OAuth2 token server that issues and expires
tokens beside a receiver that takes only a live one, and a TLS receiver that requires
a client certificate made by the test's own CA.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import pytest

from tests.integration.conftest import Api
from tests.integration.test_delivery import create_endpoint, wait_for_status
from tests.tls_certs import Authority

pytestmark = pytest.mark.integration


class Servers:
    """A token server (`/token`) and the receiver it guards (`/hook`), on one port; and what
    each was asked. `expire()` makes every issued token dead, as a server's restart does."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.live: set[str] = set()
        self.received: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.token_server_up = True
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    servers.token(self, raw)
                else:
                    servers.hook(self, raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        scheme, _, encoded = (handler.headers.get("Authorization") or "").partition(" ")
        pair = base64.b64decode(encoded).decode() if scheme == "Basic" else ""
        client = ":".join(unquote_plus(part) for part in pair.split(":", 1))  # RFC 6749 §2.3.1
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self.token_requests.append({"client": client, **form})
        if not self.token_server_up:
            return _answer(handler, 503, {"error": "temporarily_unavailable"})
        if client != "hookline:s3cret/+" or form.get("grant_type") != "client_credentials":
            return _answer(handler, 401, {"error": "invalid_client"})
        token = f"tok-{len(self.issued)}"
        self.issued.append(token)
        self.live.add(token)
        _answer(handler, 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def hook(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        presented = (handler.headers.get("Authorization") or "").removeprefix("Bearer ")
        self.received.append({"token": presented, "id": handler.headers.get("webhook-id")})
        _answer(handler, 200 if presented in self.live else 401, {})

    def expire(self) -> None:
        self.live.clear()


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)


def serving(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def servers() -> Iterator[Servers]:
    running = Servers()
    serving(running.server)
    yield running
    running.server.shutdown()
    running.server.server_close()


def send(api: Api, key: str, n: int) -> str:
    status, event = api.call(
        "POST", "/v1/events", {"event_type": "a.b", "payload": {"n": n}}, key=key
    )
    assert status == 202, event
    return str(event["id"])


def test_an_oauth2_token_is_fetched_cached_and_fetched_anew_on_a_401(
    stack: tuple[Api, Any], servers: Servers
) -> None:
    api, _ = stack
    key = api.tenant()
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": servers.base + "/token",
        "client_id": "hookline",
        "client_secret": "s3cret/+",
        "scope": "webhooks",
    }
    create_endpoint(api, key, servers.base + "/hook", auth=auth)

    first = [send(api, key, n) for n in range(5)]
    for event_id in first:
        wait_for_status(api, key, event_id, {"succeeded"}, 1)
    fetched_for_five = len(servers.token_requests)
    servers.expire()  # the receiver no longer takes the token Hookline holds
    after = send(api, key, 5)
    [row] = wait_for_status(api, key, after, {"succeeded"}, 1)
    servers.token_server_up = False
    servers.expire()
    failed = latest_attempt(api, key, send(api, key, 6))

    assert fetched_for_five == 1, "one token for five deliveries: cached"
    assert servers.token_requests[0] == {
        "client": "hookline:s3cret/+",
        "grant_type": "client_credentials",
        "scope": "webhooks",
    }, "RFC 6749 §2.3.1: Basic over the form-encoded id and secret"
    # Refused, fetched anew and sent again; then refused with the token server down.
    assert [r["token"] for r in servers.received[-3:]] == ["tok-0", "tok-1", "tok-1"]
    assert row["status"] == "succeeded"
    assert failed["error_class"] == "auth_error", failed
    assert "503" in failed["error_detail"]


def latest_attempt(api: Api, key: str, event_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """The newest attempt of the event's one delivery, once one is recorded."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, listed = api.call("GET", f"/v1/deliveries?event_id={event_id}", key=key)
        assert status == 200, listed
        for row in listed["data"]:
            _, attempts = api.call("GET", f"/v1/deliveries/{row['id']}/attempts", key=key)
            if attempts["data"]:
                return dict(attempts["data"][0])
        assert time.monotonic() < deadline, f"no attempt of {event_id} in {timeout_s} s"
        time.sleep(0.2)


def test_a_client_certificate_is_presented_and_a_wrong_one_fails_as_tls(
    stack: tuple[Api, Any], tmp_path: Any
) -> None:
    api, _ = stack
    key = api.tenant()
    authority, stranger = Authority(), Authority("Someone Else's CA")
    server = authority.issue("127.0.0.1", server=True)
    (tmp_path / "server.pem").write_text(server.certificate)
    (tmp_path / "server.key").write_text(server.key)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            _answer(self, 200, {})

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.load_verify_locations(cadata=authority.pem)
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    serving(httpd)
    url = f"https://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        ours = authority.issue("hookline-worker")
        theirs = stranger.issue("impostor")
        good = create_endpoint(
            api,
            key,
            url,
            tls={
                "client_certificate": ours.certificate,
                "client_key": ours.key,
                "ca_bundle": authority.pem,
            },
            event_types=["good.one"],
        )
        create_endpoint(
            api,
            key,
            url,
            tls={
                "client_certificate": theirs.certificate,
                "client_key": theirs.key,
                "ca_bundle": authority.pem,
            },
            event_types=["wrong.cert"],
        )
        _, ok = api.call("POST", "/v1/events", {"event_type": "good.one", "payload": {}}, key=key)
        _, bad = api.call(
            "POST", "/v1/events", {"event_type": "wrong.cert", "payload": {}}, key=key
        )
        [delivered] = wait_for_status(api, key, ok["id"], {"succeeded"}, 1)
        failed = latest_attempt(api, key, bad["id"])
    finally:
        httpd.shutdown()
        httpd.server_close()

    assert good["tls"]["client_key"] == "***"
    assert delivered["status"] == "succeeded"
    assert seen == ["hookline-worker"], "the receiver saw our certificate, and only ours got in"
    assert failed["error_class"] == "tls", failed["error_detail"]
