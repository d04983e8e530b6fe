"""Each alert reaches each channel once, whichever supervisors hold its message."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from standardwebhooks.webhooks import Webhook

from actors import alert as alert_actor
from actors.runtime import Runtime, client_options
from engine import logs
from engine.alerts import outbox as alert_records
from engine.alerts import sends
from engine.db.models import AlertRecord, AlertSend, Endpoint, utcnow
from engine.deliveries import record
from engine.deliveries.client import DeliveryClient, Outcome, Request, open_session
from engine.endpoints.crud import update_endpoint
from engine.ssrf import AddressPolicy
from engine.tenancy.credentials import CredentialGeneration as Generation
from engine.tenancy.tenants import update_tenant
from tests.factories import make_endpoint, make_settings

ALERT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
POLICY = AddressPolicy(allow_private=True)


@pytest.fixture
def endpoint(sqlite_db: Any) -> Endpoint:
    return make_endpoint()


@pytest.fixture
def alert_id(endpoint: Endpoint) -> str:
    emitted = alert_records.emit(
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        kind="endpoint.failing",
        dedup="t1",
        facts={"endpoint_id": endpoint.id, "endpoint_url": endpoint.url},
    )
    assert emitted is not None
    return emitted


def test_a_claimed_channel_is_held_for_everyone_else_until_given_back(alert_id: str) -> None:
    now = utcnow()
    mine = sends.claim(alert_id, "slack", now=now)
    assert mine.status == sends.MINE
    assert sends.claim(alert_id, "slack", now=now).status == sends.HELD
    assert sends.claim(alert_id, "webhook", now=now).status == sends.MINE

    sends.give_back(mine)
    again = sends.claim(alert_id, "slack", now=now)
    assert again.status == sends.MINE
    sends.give_back(mine)  # a stale token frees nothing
    assert sends.claim(alert_id, "slack", now=now).status == sends.HELD

    sends.done(again, now)
    assert sends.claim(alert_id, "slack", now=now).status == sends.SENT
    assert AlertRecord.get_by_id(alert_id).sent == ["slack"]


def test_a_stale_claim_is_taken_over_only_when_asked(alert_id: str) -> None:
    then = utcnow() - dt.timedelta(seconds=60)
    dead = sends.claim(alert_id, "webhook", now=then)
    later = then + dt.timedelta(seconds=60)

    assert sends.claim(alert_id, "webhook", now=later).status == sends.HELD
    taken = sends.claim(alert_id, "webhook", now=later, retake_before=later)
    assert (taken.status, taken.claimed_at) == (sends.MINE, later)
    sends.done(dead, later)  # the dead sender's token no longer marks it
    assert AlertSend.get().sent_at is None


class Channels:
    """Fake senders: each call is counted; `during[name]` runs once while it sends, and
    `fail[name]` is raised once."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.during: dict[str, Callable[[], None]] = {}
        self.fail: dict[str, Exception] = {}

    def sender(self, name: str) -> Callable[..., None]:
        def send(*_args: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.during:
                self.during.pop(name)()
            if name in self.fail:
                raise self.fail.pop(name)

        return send


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Channels:
    fake = Channels()
    for name in ("slack", "webhook"):
        monkeypatch.setitem(alert_actor.SENDERS, name, fake.sender(name))
    return fake


def supervisor(sqlite_db: Any, tmp_path: Any) -> Runtime:
    settings = make_settings(
        HOOKLINE_DATA_DIR=str(tmp_path / "var"),
        HOOKLINE_ALERT_SLACK_WEBHOOK_URL="http://127.0.0.1:9/slack",
        HOOKLINE_ALERT_WEBHOOK_URL="http://127.0.0.1:9/alerts",
        HOOKLINE_ALERT_WEBHOOK_SECRET=ALERT_SECRET,
    )
    return Runtime(settings, sqlite_db, SimpleNamespace())  # type: ignore[arg-type]


def test_two_supervisors_with_one_alert_reach_each_channel_once(
    sqlite_db: Any, tmp_path: Any, alert_id: str, channels: Channels
) -> None:
    first, second = supervisor(sqlite_db, tmp_path), supervisor(sqlite_db, tmp_path)
    # The same alert published twice: the second supervisor takes it while the first is
    # still sending to Slack, before anything is marked sent.
    channels.during["slack"] = lambda: alert_actor.alert(second, alert_id)

    alert_actor.alert(first, alert_id)
    alert_actor.alert(second, alert_id)  # and a third copy, after both

    assert channels.calls == {"slack": 1, "webhook": 1}
    assert sorted(AlertRecord.get_by_id(alert_id).sent) == ["slack", "webhook"]


def test_a_channel_that_refused_is_tried_again_and_one_that_may_have_it_is_not_for_slack(
    sqlite_db: Any, tmp_path: Any, alert_id: str, channels: Channels
) -> None:
    rt = supervisor(sqlite_db, tmp_path)
    channels.fail["slack"] = alert_actor.AlertSendError("timed out", unsure=True)
    channels.fail["webhook"] = alert_actor.AlertSendError("HTTP 500")
    with pytest.raises(alert_actor.AlertSendError, match="webhook"):
        alert_actor.alert(rt, alert_id)

    alert_actor.alert(rt, alert_id)  # Dramatiq's retry
    assert channels.calls == {"slack": 1, "webhook": 2}
    assert AlertRecord.get_by_id(alert_id).sent == ["webhook"]


def test_a_send_cut_short_is_repeated_only_to_a_deduplicating_channel_once_stale(
    sqlite_db: Any, tmp_path: Any, alert_id: str, channels: Channels
) -> None:
    rt = supervisor(sqlite_db, tmp_path)
    # A supervisor killed mid-send: both claims taken a minute ago, neither marked sent.
    then = utcnow() - dt.timedelta(seconds=60)
    sends.claim(alert_id, "slack", now=then)
    sends.claim(alert_id, "webhook", now=then)

    alert_actor.alert(rt, alert_id)  # the message, redelivered to the other supervisor

    assert channels.calls == {"webhook": 1}
    assert AlertRecord.get_by_id(alert_id).sent == ["webhook"]


def test_a_deduplicating_channel_another_supervisor_is_sending_is_retried_later(
    sqlite_db: Any, tmp_path: Any, alert_id: str, channels: Channels
) -> None:
    rt = supervisor(sqlite_db, tmp_path)
    sends.claim(alert_id, "webhook", now=utcnow())  # in flight elsewhere

    with pytest.raises(alert_actor.AlertSendError, match="webhook"):
        alert_actor.alert(rt, alert_id)
    assert channels.calls == {"slack": 1}


@pytest.mark.parametrize(
    ("status_code", "error_class", "detail", "maybe_taken"),
    [
        (500, "http_status", "HTTP 500 Internal Server Error", False),
        (None, "dns", "ClientConnectorDNSError: Cannot connect to host slack.invalid", False),
        (None, "refused_address", "loopback address refused", False),
        (None, "connection", "ClientConnectorError: Cannot connect to host 127.0.0.1:9", False),
        (None, "timeout", "ConnectionTimeoutError: Connection timeout to host x", False),
        (None, "timeout", "no answer within 5 s", True),
        (None, "connection", "ServerDisconnectedError: Server disconnected", True),
    ],
)
def test_a_post_may_have_reached_the_channel_only_once_a_connection_was_made(
    status_code: int | None, error_class: str, detail: str, maybe_taken: bool
) -> None:
    outcome = Outcome(
        started_at=utcnow(),
        duration_ms=1.0,
        status_code=status_code,
        error_class=error_class,
        error_detail=detail,
    )
    assert alert_actor._maybe_taken(outcome) is maybe_taken


SLACK = "http://127.0.0.1:9/services/T0/B0/slacksecret77"
ROUTING_KEY = "pdkey-3c9e1a"
TENANT_SECRET = "whsec_dGVuYW50LXdlYmhvb2stc2VjcmV0LTMyYnl0ZXM="
HEADER_TOKEN = "Bearer tok-5f2a9c1e7b"
TENANT_CHANNELS = {
    "slack_webhook_url": SLACK,
    "pagerduty_routing_key": ROUTING_KEY,
    "webhook_url": "http://127.0.0.1:9/alerts/hooktoken42",
    "webhook_secret": TENANT_SECRET,
}


def with_tenant_channels(rt: Runtime, endpoint: Endpoint) -> None:
    update_tenant(
        endpoint.tenant_id,
        {"alert_channels": TENANT_CHANNELS},
        credentials=Generation(),
        box=rt.box,
    )


class FakeClient:
    """The runtime's HTTP client: records each request and answers with `answer(request)`."""

    def __init__(self, answer: Callable[[Request], Outcome]) -> None:
        self.sent: list[Request] = []
        self.answer = answer

    async def send(self, request: Request) -> Outcome:
        self.sent.append(request)
        return self.answer(request)


def on_this_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor's event loop, stood in for by one `asyncio.run` per request."""
    monkeypatch.setattr(
        alert_actor, "async_to_sync", lambda fn: lambda *args: asyncio.run(fn(*args))
    )


def test_alerts_go_out_with_the_tenants_real_slack_url_pagerduty_key_and_webhook_secret(
    sqlite_db: Any,
    tmp_path: Any,
    alert_id: str,
    endpoint: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = supervisor(sqlite_db, tmp_path)
    with_tenant_channels(rt, endpoint)
    client = FakeClient(
        lambda request: Outcome(started_at=utcnow(), duration_ms=1.0, status_code=200)
    )
    rt.client = client  # type: ignore[assignment]
    on_this_thread(monkeypatch)

    alert_actor.alert(rt, alert_id)

    by_url = {request.url: request for request in client.sent}
    assert SLACK in by_url
    pagerduty = by_url[rt.settings.alert_pagerduty_url]
    assert json.loads(pagerduty.body)["routing_key"] == ROUTING_KEY
    webhook = by_url[TENANT_CHANNELS["webhook_url"]]
    Webhook(TENANT_SECRET).verify(webhook.body, dict(webhook.headers))


def test_no_log_line_at_any_level_carries_an_alert_secret_or_a_custom_header(
    sqlite_db: Any,
    tmp_path: Any,
    alert_id: str,
    endpoint: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = supervisor(sqlite_db, tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("debug", "json")
    written = io.StringIO()
    root.handlers[0].setStream(written)  # type: ignore[attr-defined]
    try:
        with_tenant_channels(rt, endpoint)  # peewee logs its SQL at debug
        # Each channel fails as aiohttp fails for a URL it cannot take: quoting it, and the
        # request's repr besides.
        rt.client = FakeClient(  # type: ignore[assignment]
            lambda request: Outcome(
                started_at=utcnow(),
                duration_ms=1.0,
                error_class="invalid_url",
                error_detail=f"InvalidUrlClientError: {request.url} {request!r}",
            )
        )
        on_this_thread(monkeypatch)
        for _ in range(2):  # the first try, and Dramatiq's retry
            with pytest.raises(alert_actor.AlertSendError):
                alert_actor.alert(rt, alert_id)
        deliver_with_custom_headers(rt, endpoint)
    finally:
        root.handlers[:], root.level = handlers, level

    text = written.getvalue()
    assert "alert_failed" in text, "the failures were logged"
    assert '"level": "debug"' in text, "debug lines were captured"
    for secret in (SLACK, "slacksecret77", ROUTING_KEY, TENANT_SECRET, "tok-5f2a9c1e7b"):
        assert secret not in text
    # The webhook URL is stored and answered in the clear, but its path may hold a token
    # of the receiver's: a failure names its host only.
    failures = [line for line in text.splitlines() if '"alert_failed"' in line]
    assert failures and not any("hooktoken42" in line for line in failures)


def deliver_with_custom_headers(rt: Runtime, endpoint: Endpoint) -> None:
    """One attempt, with a custom header, to a port nothing listens on, and its recording."""
    update_endpoint(
        endpoint.tenant_id,
        endpoint.id,
        {"headers": {"Authorization": HEADER_TOKEN}},
        POLICY,
        rt.box,
    )
    row = Endpoint.get_by_id(endpoint.id)
    row.url, row.secret = "http://127.0.0.1:9/hook", ALERT_SECRET  # made with another box
    claimed = record.Claim(SimpleNamespace(id="dlv_1"), row, SimpleNamespace(id="evt_1"))  # type: ignore[arg-type]
    request = record.build_request(claimed, user_agent="t", timestamp=1, box=rt.box, body=b"{}")
    assert request.headers["Authorization"] == HEADER_TOKEN, "the real value is sent"

    async def send() -> Outcome:
        session = open_session(client_options(rt.settings))
        async with session:
            return await DeliveryClient(session, client_options(rt.settings)).send(request)

    outcome = asyncio.run(send())
    assert not outcome.success
    structlog.get_logger("hookline.test").debug("sent", request=repr(request), outcome=outcome)
