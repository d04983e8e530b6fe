"""The alert actor: `alert(alert_id)` on `hookline.alert`, each channel reached once.

Runs in `hookline supervisor`. The messages are built by `engine.alerts.messages`;
HTTP channels (Slack, PagerDuty, the generic webhook) go through the
process's SSRF-guarded client, email through `smtplib`. A channel that fails
is logged and counted (`hookline_alerts_total{result="failed"}`); once every
channel was tried the message raises, so Dramatiq retries it a few times,
and a retry skips the channels that already received the alert.
"""

from __future__ import annotations

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
from engine.alerts.messages import Alert, Channels
from engine.deliveries.client import Request

log = structlog.get_logger("hookline.alerts")

QUEUE_NAME = "hookline.alert"

# A channel that fails is retried a few times (Dramatiq's Retries), then given up.
RETRIES = {"max_retries": 3, "min_backoff": 5_000, "max_backoff": 30_000}


class AlertSendError(Exception):
    """A channel did not take an alert."""


def alert(rt: Runtime, alert_id: str) -> None:
    """Send one alert to every configured channel that has not received it yet."""
    with rt.database.connection_context():
        pending = alert_records.load(alert_id)
    if pending is None:
        return
    channels = alerts.channels_for(rt.settings, pending.tenant_channels)
    endpoint_id = pending.facts.get("endpoint_id")
    health_url = f"{alerts.public_base(rt.settings)}/v1/endpoints/{endpoint_id}/health"
    message = Alert(pending.id, pending.kind, pending.facts, health_url)
    failed = []
    for name in channels.names_for(pending.kind):
        if name in pending.sent:
            continue
        context = {"alert_id": alert_id, "kind": pending.kind, "endpoint_id": endpoint_id}
        try:
            SENDERS[name](rt, channels, message)
        except Exception as exc:  # noqa: BLE001 - one failing channel never stops the others
            metrics.ALERTS.labels(name, "failed").inc()
            log.warning(
                "alert_failed", channel=name, error=f"{type(exc).__name__}: {exc}"[:300], **context
            )
            failed.append(name)
            continue
        with rt.database.connection_context():
            alert_records.mark_sent(alert_id, name)
        metrics.ALERTS.labels(name, "sent").inc()
        log.info("alert_sent", channel=name, **context)
    if failed:
        raise AlertSendError(f"alert {alert_id}: {', '.join(failed)} failed; retrying")


def _post(rt: Runtime, url: str | None, body: bytes, headers: Mapping[str, str]) -> None:
    """POST through the SSRF-guarded client; raise unless the answer is 2xx."""
    assert rt.client is not None, "the HttpClient middleware opens the client at boot"
    assert url is not None
    sent = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    outcome = async_to_sync(rt.client.send)(Request(url=url, headers=sent, body=body))
    if not outcome.success:
        raise AlertSendError(outcome.error_detail or f"HTTP {outcome.status_code}")


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
    with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout_s) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(email)


SENDERS: dict[str, Callable[[Runtime, Channels, Alert], None]] = {
    "slack": _slack,
    "email": _email,
    "pagerduty": _pagerduty,
    "webhook": _webhook,
}
