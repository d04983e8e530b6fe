"""Alert messages, built without I/O: Slack Block Kit, PagerDuty Events v2, email, webhook.

Kinds: `endpoint.failing` (the breaker opened, or a warning that the endpoint
will be disabled), `endpoint.disabled`, `endpoint.recovered`, and
`delivery.quarantined` (a digest per endpoint). PagerDuty gets the first
three (trigger, trigger, resolve, one `dedup_key` per endpoint); the other
channels get all four. Channels come from the settings, and a tenant's
`alert_channels` replace them field by field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from engine import signing
from engine.settings import Settings

FAILING = "endpoint.failing"
DISABLED = "endpoint.disabled"
RECOVERED = "endpoint.recovered"
QUARANTINED = "delivery.quarantined"
KINDS = (FAILING, DISABLED, RECOVERED, QUARANTINED)
CHANNELS = ("slack", "email", "pagerduty", "webhook")
PAGED_KINDS = (FAILING, DISABLED, RECOVERED)
REDACTED = "***"


@dataclass(frozen=True)
class Alert:
    """One alert: its id (the same on every retry), kind and the facts it reports."""

    id: str
    kind: str
    facts: Mapping[str, Any]
    health_url: str

    def fact(self, name: str) -> Any:
        """One fact, None when absent."""
        return self.facts.get(name)


@dataclass(frozen=True)
class Smtp:
    """The SMTP server alert emails go through."""

    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None = field(repr=False)
    sender: str


@dataclass(frozen=True)
class Channels:
    """Where one tenant's alerts go."""

    # Secrets (a Slack webhook URL is one): never in a repr, redacted from errors (`redact`).
    slack_webhook_url: str | None = field(default=None, repr=False)
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    email_to: tuple[str, ...] = ()
    smtp: Smtp | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    def names_for(self, kind: str) -> list[str]:
        """The configured channels an alert of this kind goes to, in a fixed order."""
        ready = {
            "slack": bool(self.slack_webhook_url),
            "email": bool(self.smtp and self.email_to),
            "pagerduty": bool(self.pagerduty_routing_key) and kind in PAGED_KINDS,
            "webhook": bool(self.webhook_url and self.webhook_secret),
        }
        return [name for name in CHANNELS if ready[name]]

    def redact(self, text: str) -> str:
        """`text` without this tenant's secrets: an HTTP client's error may quote the URL
        it failed to reach. The URLs keep their scheme and host, to tell where it failed."""
        hidden = [self.pagerduty_routing_key, self.webhook_secret]
        for url in (self.slack_webhook_url, self.webhook_url):
            hidden += _url_tails(url)
        for value in sorted((v for v in hidden if v), key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


def _url_tails(url: str | None) -> list[str]:
    """What follows a URL's host, as written and as yarl (aiohttp) writes it again."""
    if not url:
        return []
    parsed = urlsplit(url)
    tail = url[len(f"{parsed.scheme}://{parsed.netloc}") :]
    try:
        again = URL(url).raw_path_qs
    except ValueError:
        again = ""
    return [t for t in (url, tail, again) if t not in ("", "/")]


def channels_for(settings: Settings, overrides: Mapping[str, Any] | None) -> Channels:
    """The settings' channels with a tenant's non-null `alert_channels` fields in their place."""
    mine = {key: value for key, value in (overrides or {}).items() if value is not None}
    smtp = None
    if settings.alert_smtp_host and settings.alert_smtp_from:
        smtp = Smtp(
            settings.alert_smtp_host,
            settings.alert_smtp_port,
            settings.alert_smtp_starttls,
            settings.alert_smtp_username,
            settings.alert_smtp_password,
            settings.alert_smtp_from,
        )
    webhook = (settings.alert_webhook_url, settings.alert_webhook_secret)
    if "webhook_url" in mine:  # a tenant's webhook is signed with the tenant's own secret
        webhook = (mine["webhook_url"], mine.get("webhook_secret"))
    return Channels(
        slack_webhook_url=mine.get("slack_webhook_url", settings.alert_slack_webhook_url),
        pagerduty_routing_key=mine.get(
            "pagerduty_routing_key", settings.alert_pagerduty_routing_key
        ),
        pagerduty_url=settings.alert_pagerduty_url,
        email_to=tuple(mine.get("email_to", settings.alert_smtp_to)),
        smtp=smtp,
        webhook_url=webhook[0],
        webhook_secret=webhook[1],
    )


def public_base(settings: Settings) -> str:
    """The API's public base URL, for links."""
    return (settings.public_url or f"http://{settings.bind}").rstrip("/")


def title(alert: Alert) -> str:
    """One line naming what happened."""
    endpoint = alert.fact("endpoint_id")
    if alert.kind == FAILING and alert.fact("warning_pct"):
        return f"Endpoint {endpoint} still failing: disabled at {alert.fact('disables_at')}"
    if alert.kind == FAILING:
        return f"Endpoint {endpoint} failing: circuit breaker open"
    if alert.kind == DISABLED:
        return f"Endpoint {endpoint} disabled"
    if alert.kind == RECOVERED:
        return f"Endpoint {endpoint} recovered"
    return f"{alert.fact('quarantined')} deliveries to endpoint {endpoint} quarantined"


def details(alert: Alert) -> list[tuple[str, str]]:
    """(label, value) pairs of the facts worth showing, in reading order."""
    rate = alert.fact("failure_rate")
    rows = [
        ("Endpoint", f"{alert.fact('endpoint_id')}"),
        ("URL", f"{alert.fact('endpoint_url')}"),
        ("State", f"{alert.fact('state')}"),
        ("Failure rate", f"{rate * 100:.0f} % of {alert.fact('window_attempts')} attempts")
        if rate is not None
        else ("Failure rate", "n/a"),
        ("Consecutive failures", f"{alert.fact('consecutive_failures')}"),
    ]
    optional = (
        ("Open since", "opened_at"),
        ("Disabled at", "disables_at"),
        ("Reason", "reason"),
        ("Parked deliveries", "parked"),
        ("Quarantined deliveries", "quarantined"),
    )
    rows += [(label, f"{alert.fact(key)}") for label, key in optional if alert.fact(key)]
    return rows


def slack_message(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body: header, facts, a link button, and a text fallback."""
    facts = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_mrkdwn(value)}"}
        for label, value in details(alert)
    ]
    return {
        "text": f"Hookline: {title(alert)} ({alert.fact('endpoint_url')}) {alert.health_url}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title(alert)[:150]}},
            {"type": "section", "fields": facts[:10]},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Endpoint health"},
                        "url": alert.health_url,
                    }
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": _mrkdwn(
                            f"{alert.kind} · tenant {alert.fact('tenant_id')} · "
                            f"{alert.fact('occurred_at')} · alert {alert.id}"
                        ),
                    }
                ],
            },
        ],
    }


def pagerduty_event(alert: Alert, routing_key: str) -> dict[str, Any]:
    """An Events API v2 body: `resolve` on recovery, else `trigger`; one dedup_key per endpoint."""
    dedup_key = f"hookline-endpoint-{alert.fact('endpoint_id')}"
    if alert.kind == RECOVERED:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": f"Hookline: {title(alert)} ({alert.fact('endpoint_url')})"[:1024],
            "source": "hookline",
            "severity": "critical" if alert.kind == DISABLED else "error",
            "component": f"{alert.fact('endpoint_id')}",
            "group": f"{alert.fact('tenant_id')}",
            "class": alert.kind,
            "custom_details": dict(details(alert)),
        },
        "links": [{"href": alert.health_url, "text": "Endpoint health"}],
        "client": "Hookline",
    }


def email_message(alert: Alert, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A plain-text email."""
    message = EmailMessage()
    message["Subject"] = f"[Hookline] {title(alert)}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [title(alert), ""]
    lines += [f"{label}: {value}" for label, value in details(alert)]
    lines += [
        "",
        f"Health: {alert.health_url}",
        f"Alert {alert.id} ({alert.kind}) at {alert.fact('occurred_at')}",
    ]
    if alert.kind == DISABLED:
        lines.append(
            "Enable it again, replaying what was held back: POST /v1/endpoints/"
            f'{alert.fact("endpoint_id")}/enable with {{"replay": true}}'
        )
    message.set_content("\n".join(lines) + "\n")
    return message


def webhook_body(alert: Alert) -> bytes:
    """The generic webhook's JSON body: `type`, `timestamp`, `data`."""
    data = {"alert_id": alert.id, **alert.facts, "health_url": alert.health_url}
    document = {"type": alert.kind, "timestamp": alert.fact("occurred_at"), "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def webhook_headers(alert: Alert, body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """Standard Webhooks headers for the generic webhook; `webhook-id` is the alert id.

    Raises:
        InvalidSecretError: the secret is not a `whsec_` secret.
    """
    headers = signing.webhook_headers([secret], alert.id, timestamp, body)
    headers["content-type"] = "application/json"
    return headers


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
