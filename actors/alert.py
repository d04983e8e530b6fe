"""The alert actor: `alert(alert_id)` on `hookline.alert`, each channel reached once.

Runs in `hookline supervisor` (one or more of them). The messages are built by
`engine.alerts.messages`; HTTP channels (Slack, PagerDuty, the generic webhook)
go through the process's SSRF-guarded client, email through `smtplib`.

Before a channel is dialled its send is claimed and committed
(`engine.alerts.sends`): a second supervisor holding the same alert skips it.
A channel that fails is logged and counted (`hookline_alerts_total{result="failed"}`)
and, when it surely did not take the alert (an answer other than 2xx, no
connection made), its claim is given back; once every channel was tried the
message raises, so Dramatiq retries it a few times, and a retry skips the
channels that already received the alert. A send cut short (a timeout after
the request went out, a supervisor killed mid-send) is never repeated to Slack
or email (logged `alert_unconfirmed`): at most once. PagerDuty and the webhook drop
duplicates by their key, so they are tried again once the claim is stale.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping

import structlog
from dramatiq.asyncio import async_to_sync

from actors import metrics
from actors.runtime import USER_AGENT, Runtime
from engine.alerts import messages as alerts
from engine.alerts import outbox as alert_records
from engine.alerts import sends
from engine.alerts.messages import Alert, Channels
from engine.db.models import utcnow
from engine.deliveries.client import Outcome, Request

log = structlog.get_logger("hookline.alerts")

QUEUE_NAME = "hookline.alert"

# A channel that fails is retried a few times (Dramatiq's Retries), then given up.
RETRIES = {"max_retries": 3, "min_backoff": 5_000, "max_backoff": 30_000}
# Channels whose receivers drop a repeated alert (PagerDuty's `dedup_key`, the webhook's
# `webhook-id`): a send whose fate is unknown may be made again.
DEDUPLICATING = frozenset({"pagerduty", "webhook"})
CLAIM_MARGIN_S = 5.0  # beyond the request timeout, before a silent claim counts as dead
# Transport failures raised before a connection was made: the channel cannot have the alert.
_NOT_CONNECTED = ("ClientConnectorError", "ClientConnectorDNSError", "ConnectionTimeoutError")


class AlertSendError(Exception):
    """A channel did not take an alert; `unsure` when it may have taken it all the same."""

    def __init__(self, detail: str, *, unsure: bool = False) -> None:
        super().__init__(detail)
        self.unsure = unsure


def alert(rt: Runtime, alert_id: str) -> None:
    """Send one alert to every configured channel that has not received it yet."""
    with rt.database.connection_context():
        pending = alert_records.load(alert_id, rt.box)
    if pending is None:
        return
    channels = alerts.channels_for(rt.settings, pending.tenant_channels)
    endpoint_id = pending.facts.get("endpoint_id")
    health_url = f"{alerts.public_base(rt.settings)}/v1/endpoints/{endpoint_id}/health"
    message = Alert(pending.id, pending.kind, pending.facts, health_url)
    retry = []
    for name in channels.names_for(pending.kind):
        if name in pending.sent:
            continue
        context = {"alert_id": alert_id, "kind": pending.kind, "endpoint_id": endpoint_id}
        if not _send_once(rt, name, channels, message, context):
            retry.append(name)
    if retry:
        raise AlertSendError(f"alert {alert_id}: {', '.join(retry)} not sent; retrying")


def _send_once(
    rt: Runtime, name: str, channels: Channels, message: Alert, context: dict[str, object]
) -> bool:
    """Claim the channel, dial it, record what happened; False when a retry should try again."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=rt.settings.request_timeout_s + CLAIM_MARGIN_S)
    with rt.database.connection_context():
        taken = sends.claim(
            message.id, name, now=now, retake_before=stale if name in DEDUPLICATING else None
        )
    if taken.status == sends.SENT:
        return True
    if taken.status == sends.HELD:
        # Another supervisor is sending it, or died doing so: a deduplicating channel is
        # tried again once the claim is stale; Slack and email are left, at most once.
        dead = taken.claimed_at is not None and taken.claimed_at < stale
        if dead and name not in DEDUPLICATING:
            log.warning("alert_unconfirmed", channel=name, claimed=str(taken.claimed_at), **context)
        return name not in DEDUPLICATING
    try:
        SENDERS[name](rt, channels, message)
    except Exception as exc:  # noqa: BLE001 - one failing channel never stops the others
        return _failed(
            rt, name, taken, channels.redact(f"{type(exc).__name__}: {exc}"), exc, context
        )
    with rt.database.connection_context():
        sends.done(taken, utcnow())
    metrics.ALERTS.labels(name, "sent").inc()
    log.info("alert_sent", channel=name, **context)
    return True


def _failed(
    rt: Runtime,
    name: str,
    taken: sends.Claim,
    error: str,
    exc: Exception,
    context: dict[str, object],
) -> bool:
    """Log and count a failed send; give the claim back unless the channel may have it.

    `error` describes it with the channels' secrets redacted: an HTTP client's error may
    quote the Slack URL it failed to reach.
    """
    error = error[:300]
    unsure = not isinstance(exc, AlertSendError) or exc.unsure
    # Counted as failed either way: a channel that only times out still trips the
    # HooklineAlertChannelFailing rule (ops/prometheus/alerts.yml).
    metrics.ALERTS.labels(name, "failed").inc()
    if unsure and name not in DEDUPLICATING:
        log.warning("alert_unconfirmed", channel=name, error=error, **context)
        return True
    with rt.database.connection_context():
        sends.give_back(taken)
    log.warning("alert_failed", channel=name, error=error, **context)
    return False


def _post(rt: Runtime, url: str | None, body: bytes, headers: Mapping[str, str]) -> None:
    """POST through the SSRF-guarded client; raise unless the answer is 2xx."""
    assert rt.client is not None, "the HttpClient middleware opens the client at boot"
    assert url is not None
    sent = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    outcome = async_to_sync(rt.client.send)(Request(url=url, headers=sent, body=body))
    if not outcome.success:
        detail = outcome.error_detail or f"HTTP {outcome.status_code}"
        raise AlertSendError(detail, unsure=_maybe_taken(outcome))


def _maybe_taken(outcome: Outcome) -> bool:
    """Whether a failed POST may have reached the channel all the same."""
    if outcome.status_code is not None or outcome.error_class in ("refused_address", "dns"):
        return False
    return not (outcome.error_detail or "").startswith(_NOT_CONNECTED)


def _slack(rt: Runtime, channels: Channels, message: Alert) -> None:
    body = json.dumps(alerts.slack_message(message)).encode()
    _post(rt, channels.slack_webhook_url, body, {})


def _pagerduty(rt: Runtime, channels: Channels, message: Alert) -> None:
    assert channels.pagerduty_routing_key is not None
    event = alerts.pagerduty_event(message, channels.pagerduty_routing_key)
    _post(rt, channels.pagerduty_url, json.dumps(event).encode(), {})


def _webhook(rt: Runtime, channels: Channels, message: Alert) -> None:
    assert channels.webhook_secret is not None
    body = alerts.webhook_body(message)
    _post(
        rt,
        channels.webhook_url,
        body,
        alerts.webhook_headers(message, body, channels.webhook_secret, int(time.time())),
    )


def _email(rt: Runtime, channels: Channels, message: Alert) -> None:
    smtp = channels.smtp
    assert smtp is not None
    email = alerts.email_message(message, smtp.sender, channels.email_to)
    timeout_s = rt.settings.request_timeout_s
    try:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout_s)
    except (ConnectionRefusedError, smtplib.SMTPConnectError) as exc:
        raise AlertSendError(f"{type(exc).__name__}: {exc}") from None
    try:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(email)
    except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
        # The server answered: it refused the mail.
        raise AlertSendError(f"{type(exc).__name__}: {exc}") from None
    finally:
        _close(client)


def _close(client: smtplib.SMTP) -> None:
    """Say goodbye; the mail is sent or not by now, whatever QUIT answers."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


SENDERS: dict[str, Callable[[Runtime, Channels, Alert], None]] = {
    "slack": _slack,
    "email": _email,
    "pagerduty": _pagerduty,
    "webhook": _webhook,
}
