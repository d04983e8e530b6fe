"""Alert messages: Slack Block Kit, PagerDuty Events v2, email, signed webhook; and channels."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from engine.alerts import messages as alerts
from engine.alerts.messages import Alert
from engine.errors import SettingsError
from tests.factories import make_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEALTH = "https://hooks.example.com/v1/endpoints/ep_1/health"
FACTS: dict[str, Any] = {
    "endpoint_id": "ep_1",
    "endpoint_url": "https://receiver.example.com/hooks?a=1&b=<2>",
    "tenant_id": "ten_1",
    "state": "open",
    "failure_rate": 0.85,
    "window_attempts": 20,
    "consecutive_failures": 17,
    "opened_at": "2026-01-01T12:00:00.000Z",
    "disables_at": "2026-01-04T12:00:00.000Z",
    "occurred_at": "2026-01-01T12:00:00.000Z",
}


def make(kind: str = alerts.FAILING, **facts: Any) -> Alert:
    return Alert("alr_1", kind, {**FACTS, **facts}, HEALTH)


def test_the_slack_message_has_a_header_the_facts_a_link_button_and_a_text_fallback() -> None:
    message = alerts.slack_message(make())

    header, section, actions, context = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Endpoint ep_1 failing: circuit breaker open"},
    }
    fields = [field["text"] for field in section["fields"]]
    assert "*Endpoint*\nep_1" in fields
    assert "*State*\nopen" in fields
    assert "*Failure rate*\n85 % of 20 attempts" in fields
    assert "*URL*\nhttps://receiver.example.com/hooks?a=1&amp;b=&lt;2&gt;" in fields
    assert len(fields) <= 10
    [button] = actions["elements"]
    assert button["type"] == "button" and button["url"] == HEALTH
    assert "alr_1" in context["elements"][0]["text"]
    assert message["text"].startswith("Hookline: Endpoint ep_1 failing")
    assert HEALTH in message["text"]
    json.dumps(message)


def test_a_warning_names_when_the_endpoint_will_be_disabled() -> None:
    title = alerts.slack_message(make(warning_pct=70))["blocks"][0]["text"]["text"]

    assert title == "Endpoint ep_1 still failing: disabled at 2026-01-04T12:00:00.000Z"


def test_pagerduty_triggers_on_failing_with_one_dedup_key_per_endpoint() -> None:
    event = alerts.pagerduty_event(make(), "R0UTINGKEY")

    assert event["routing_key"] == "R0UTINGKEY"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "hookline-endpoint-ep_1"
    payload = event["payload"]
    assert payload["severity"] == "error"
    assert payload["source"] == "hookline"
    assert payload["class"] == "endpoint.failing"
    assert "Endpoint ep_1 failing" in payload["summary"]
    assert payload["custom_details"]["State"] == "open"
    assert event["links"] == [{"href": HEALTH, "text": "Endpoint health"}]


def test_pagerduty_triggers_a_disabled_endpoint_as_critical() -> None:
    event = alerts.pagerduty_event(make(alerts.DISABLED, reason="410"), "K")

    assert (event["event_action"], event["payload"]["severity"]) == ("trigger", "critical")
    assert event["dedup_key"] == "hookline-endpoint-ep_1"


def test_pagerduty_resolves_a_recovery_with_the_same_dedup_key() -> None:
    event = alerts.pagerduty_event(make(alerts.RECOVERED, state="closed"), "K")

    assert event == {
        "routing_key": "K",
        "event_action": "resolve",
        "dedup_key": "hookline-endpoint-ep_1",
    }


def test_the_email_is_plain_text_with_the_facts_and_the_health_link() -> None:
    message = alerts.email_message(
        make(alerts.DISABLED, reason="gone"), "ops@h.io", ["a@x.io", "b@x.io"]
    )

    assert message["Subject"] == "[Hookline] Endpoint ep_1 disabled"
    assert message["From"] == "ops@h.io"
    assert message["To"] == "a@x.io, b@x.io"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "Reason: gone" in body
    assert "Failure rate: 85 % of 20 attempts" in body
    assert f"Health: {HEALTH}" in body
    assert "/v1/endpoints/ep_1/enable" in body


def test_a_quarantine_digest_counts_the_deliveries() -> None:
    message = alerts.email_message(make(alerts.QUARANTINED, quarantined=12), "o@h.io", ["a@x.io"])

    assert message["Subject"] == "[Hookline] 12 deliveries to endpoint ep_1 quarantined"
    assert "Quarantined deliveries: 12" in message.get_content()


def test_the_webhook_is_signed_so_the_standardwebhooks_library_verifies_it() -> None:
    alert = make()
    body = alerts.webhook_body(alert)

    headers = alerts.webhook_headers(alert, body, SECRET, int(time.time()))

    document = Webhook(SECRET).verify(body, headers)
    assert headers["webhook-id"] == "alr_1"
    assert document["type"] == "endpoint.failing"
    assert document["data"]["endpoint_id"] == "ep_1"
    assert document["data"]["alert_id"] == "alr_1"
    assert document["data"]["health_url"] == HEALTH


def test_pagerduty_gets_no_quarantine_digest_and_unconfigured_channels_get_nothing() -> None:
    channels = alerts.Channels(
        slack_webhook_url="https://hooks.slack.example/x", pagerduty_routing_key="K"
    )

    assert channels.names_for(alerts.FAILING) == ["slack", "pagerduty"]
    assert channels.names_for(alerts.QUARANTINED) == ["slack"]
    assert alerts.Channels().names_for(alerts.DISABLED) == []


def test_the_settings_configure_every_channel() -> None:
    settings = make_settings(
        HOOKLINE_ALERT_SLACK_WEBHOOK_URL="http://127.0.0.1:1/slack",
        HOOKLINE_ALERT_PAGERDUTY_ROUTING_KEY="K",
        HOOKLINE_ALERT_PAGERDUTY_URL="http://127.0.0.1:1/pd",
        HOOKLINE_ALERT_SMTP_HOST="127.0.0.1",
        HOOKLINE_ALERT_SMTP_FROM="hookline@example.com",
        HOOKLINE_ALERT_SMTP_TO="a@example.com, b@example.com",
        HOOKLINE_ALERT_WEBHOOK_URL="http://127.0.0.1:1/hook",
        HOOKLINE_ALERT_WEBHOOK_SECRET=SECRET,
    )

    channels = alerts.channels_for(settings, None)

    assert channels.names_for(alerts.FAILING) == ["slack", "email", "pagerduty", "webhook"]
    assert channels.email_to == ("a@example.com", "b@example.com")
    assert channels.smtp is not None and channels.smtp.port == 587 and channels.smtp.starttls
    assert channels.pagerduty_url == "http://127.0.0.1:1/pd"
    assert "K" not in repr(channels) and SECRET not in repr(settings)


def test_a_tenants_channels_replace_the_settings_field_by_field() -> None:
    settings = make_settings(
        HOOKLINE_ALERT_SLACK_WEBHOOK_URL="http://127.0.0.1:1/global",
        HOOKLINE_ALERT_WEBHOOK_URL="http://127.0.0.1:1/global-hook",
        HOOKLINE_ALERT_WEBHOOK_SECRET=SECRET,
    )
    mine = {"slack_webhook_url": "http://127.0.0.1:1/mine", "pagerduty_routing_key": None}

    channels = alerts.channels_for(settings, mine)

    assert channels.slack_webhook_url == "http://127.0.0.1:1/mine"
    assert channels.webhook_url == "http://127.0.0.1:1/global-hook"
    assert channels.pagerduty_routing_key is None


@pytest.mark.parametrize(
    "env",
    [
        {"HOOKLINE_ALERT_SMTP_HOST": "mail.example.com"},
        {"HOOKLINE_ALERT_WEBHOOK_URL": "https://example.com/hook"},
        {"HOOKLINE_ALERT_WEBHOOK_SECRET": "not-a-secret"},
        {"HOOKLINE_ALERT_SMTP_USERNAME": "user"},
        {"HOOKLINE_ALERT_SMTP_TO": "nobody"},
        {"HOOKLINE_BREAKER_COOLDOWN_S": "60", "HOOKLINE_BREAKER_MAX_COOLDOWN_S": "30"},
    ],
    ids=[
        "smtp-without-from",
        "webhook-without-secret",
        "bad-secret",
        "user-without-password",
        "bad-address",
        "cap-below-cooldown",
    ],
)
def test_incomplete_alert_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        make_settings(**env)


def test_links_use_the_public_url_or_the_bind_address() -> None:
    assert alerts.public_base(make_settings(HOOKLINE_PUBLIC_URL="https://h.example.com/")) == (
        "https://h.example.com"
    )
    assert alerts.public_base(make_settings(HOOKLINE_BIND="127.0.0.1:9000")) == (
        "http://127.0.0.1:9000"
    )
