"""Acceptance of the supervisor on real PostgreSQL, RabbitMQ and processes: a failing endpoint
opens its breaker and parks its deliveries, one alert reaches each channel, the probe closes
it again and every parked delivery is delivered; an endpoint open too long is warned about,
disabled, and enabled again with replay. Each test prints what the channels received.

Every fake listens on 127.0.0.1: Slack and PagerDuty are aiohttp receivers, email an aiosmtpd
server, the generic webhook a path of the test receiver. No real host is ever dialled.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook

from tests.factories import eventually
from tests.integration.conftest import Api, free_port
from tests.integration.faults import (
    delivery_states,
    isolated_stack,
    send_events,
    wait_all_succeeded,
)
from tests.integration.test_embedded import cli, hookline_up
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

ROLES = ("api", "worker", "scheduler", "supervisor")
ALERT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROUTING_KEY = "hookline-test-routing-key"
BREAKER = {
    "HOOKLINE_BREAKER_WINDOW_S": "30",
    "HOOKLINE_BREAKER_MIN_ATTEMPTS": "10",
    "HOOKLINE_BREAKER_COOLDOWN_S": "2",
    "HOOKLINE_BREAKER_MAX_COOLDOWN_S": "4",
    "HOOKLINE_BREAKER_RELEASE_PER_S": "20",
    "HOOKLINE_ALERT_DIGEST_S": "5",
    # Retries every 2 s, never exhausted within a test: only the breaker holds deliveries back.
    "HOOKLINE_RETRY_SCHEDULE_S": ",".join(["2"] * 40),
    "HOOKLINE_PUBLIC_URL": "http://hookline.invalid",  # only written into links, never dialled
    "HOOKLINE_DB_MAX_CONNECTIONS": "6",  # PostgreSQL is shared with other runs
}


class Mailbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def parked_attempts(pg_url: str) -> dict[str, int]:
    """Attempts of every parked delivery, straight from PostgreSQL."""
    with contextlib.closing(psycopg2.connect(pg_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, attempts FROM delivery WHERE status = 'parked'")
        return dict(cursor.fetchall())


def documents(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received(path)]


def health(api: Api, key: str, endpoint_id: str) -> dict[str, Any]:
    status, body = api.call("GET", f"/v1/endpoints/{endpoint_id}/health", key=key)
    assert status == 200, body
    return dict(body)


def new_endpoint(api: Api, key: str, url: str) -> str:
    status, body = api.call("POST", "/v1/endpoints", {"url": url}, key=key)
    assert status == 201, body
    return str(body["id"])


def test_a_failing_endpoint_trips_alerts_once_parks_and_recovers_through_the_probe(
    tmp_path: Path, receiver: Receiver
) -> None:
    with Receiver() as slack, Receiver() as pagerduty, smtp_server() as (mailbox, smtp_port):
        pagerduty.script("/v2/enqueue", default=202)
        receiver.script("/hook", default=500)
        env = {
            **BREAKER,
            "HOOKLINE_ALERT_SLACK_WEBHOOK_URL": slack.url("/services/T0/B0/x"),
            "HOOKLINE_ALERT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "HOOKLINE_ALERT_PAGERDUTY_URL": pagerduty.url("/v2/enqueue"),
            "HOOKLINE_ALERT_SMTP_HOST": "127.0.0.1",
            "HOOKLINE_ALERT_SMTP_PORT": str(smtp_port),
            "HOOKLINE_ALERT_SMTP_STARTTLS": "false",
            "HOOKLINE_ALERT_SMTP_FROM": "hookline@example.com",
            "HOOKLINE_ALERT_SMTP_TO": "ops@example.com",
            "HOOKLINE_ALERT_WEBHOOK_URL": receiver.url("/alerts"),
            "HOOKLINE_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
        }
        with isolated_stack(tmp_path, roles=ROLES, **env) as (api, processes, pg_url, _):
            key = api.tenant()
            endpoint_id = new_endpoint(api, key, receiver.url("/hook"))
            sent = send_events(api, key, 20)

            opened = eventually(lambda: health(api, key, endpoint_id)["state"] != "closed", 30)
            assert opened
            slack.wait_for("/services/T0/B0/x", 1, timeout_s=45)
            pagerduty.wait_for("/v2/enqueue", 1, timeout_s=20)
            receiver.wait_for("/alerts", 1, timeout_s=20)
            eventually(lambda: mailbox.messages, 20)

            sent += send_events(api, key, 10)  # while open: parked, never attempted
            eventually(lambda: len(parked_attempts(pg_url)) >= 25, 30)
            before = parked_attempts(pg_url)
            time.sleep(6)  # two or three probe cycles, each failing
            after = parked_attempts(pg_url)
            still = set(before) & set(after)
            assert still and all(after[d] == before[d] for d in still), "parked spend nothing"
            assert sorted(after.values())[0] == 0, "the events sent while open were never tried"
            assert len(receiver.received("/hook")) < 20 + 2 * len(before), "no retry storm"

            counts_open = channel_counts(slack, pagerduty, mailbox, receiver)
            assert counts_open == {"slack": 1, "pagerduty": 1, "email": 1, "webhook": 1}
            [trigger] = documents(pagerduty, "/v2/enqueue")
            assert (trigger["event_action"], trigger["routing_key"]) == ("trigger", ROUTING_KEY)
            [failing] = receiver.received("/alerts")
            assert Webhook(ALERT_SECRET).verify(failing.body, failing.headers)["type"] == (
                "endpoint.failing"
            )

            receiver.script("/hook", default=200)
            states = wait_all_succeeded(pg_url, len(sent), timeout_s=60)
            pagerduty.wait_for("/v2/enqueue", 2, timeout_s=20)
            eventually(lambda: len(mailbox.messages) >= 2, 20)
            receiver.wait_for("/alerts", 2, timeout_s=20)
            final = health(api, key, endpoint_id)
            metrics = scrape(processes.env["HOOKLINE_SUPERVISOR_METRICS_BIND"])

        counts = channel_counts(slack, pagerduty, mailbox, receiver)
        resolve = documents(pagerduty, "/v2/enqueue")[1]
        delivered = {r.headers["webhook-id"] for r in receiver.received("/hook") if r.body}
    print(
        f"\nbreaker: {len(sent)} events, {len(before)} parked at once, "
        f"{len(receiver.received('/hook'))} attempts, delivered {len(delivered)}; "
        f"alerts while open {counts_open}, after recovery {counts}; states {states}"
    )
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    assert trigger["dedup_key"] == f"hookline-endpoint-{endpoint_id}"
    assert counts == {"slack": 2, "pagerduty": 2, "email": 2, "webhook": 2}
    assert delivered == set(sent)
    assert (final["state"], final["parked"]) == ("closed", 0)
    assert 'hookline_alerts_total{channel="slack",result="sent"} 2.0' in metrics


def test_an_endpoint_open_too_long_is_warned_about_disabled_and_replayed_when_enabled(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/down", default=500)
    env = {
        **BREAKER,
        "HOOKLINE_BREAKER_COOLDOWN_S": "1",
        "HOOKLINE_BREAKER_MAX_COOLDOWN_S": "1",
        "HOOKLINE_BREAKER_DISABLE_AFTER_S": "8",
        "HOOKLINE_ALERT_WEBHOOK_URL": receiver.url("/alerts"),
        "HOOKLINE_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
    }
    with isolated_stack(tmp_path, roles=ROLES, **env) as (api, processes, pg_url, _):
        key = api.tenant()
        endpoint_id = new_endpoint(api, key, receiver.url("/down"))
        sent = send_events(api, key, 12)

        def status() -> str:
            return str(api.call("GET", f"/v1/endpoints/{endpoint_id}", key=key)[1]["status"])

        eventually(lambda: status() == "disabled", 40)

        def kinds() -> list[str]:
            return [d["type"] for d in documents(receiver, "/alerts")]

        try:  # the last waits on a loaded supervisor
            eventually(lambda: "endpoint.disabled" in kinds(), 90)
        except AssertionError as exc:  # what held it up, should CI see it again
            said = {role: processes.tail(role, 60) for role in ("scheduler", "supervisor")}
            raise AssertionError(f"{exc}: {kinds()}\n{json.dumps(said, indent=1)}") from None
        eventually(lambda: delivery_states(pg_url) == {"parked": len(sent)}, 30)
        alerts = [(d["type"], d["data"].get("warning_pct")) for d in documents(receiver, "/alerts")]

        receiver.script("/down", default=200)
        status_code, body = api.call(
            "POST", f"/v1/endpoints/{endpoint_id}/enable", {"replay": True}, key=key
        )
        states = wait_all_succeeded(pg_url, len(sent), timeout_s=60)
        receiver.wait_for("/alerts", len(alerts) + 1, timeout_s=20)
        recovered = documents(receiver, "/alerts")[len(alerts)]
    print(f"\ndisable: alerts {alerts}; enabled replayed {body['replayed']}; states {states}")
    first, *warnings, last = alerts
    assert (first, last) == (("endpoint.failing", None), ("endpoint.disabled", None))
    # A warning at 50, 70 and 90 % of the 8 s; a breaker tick that a starved box ran late past
    # a level sends only the highest (`engine.breakers.state.tick`): the likely cause of the
    # 4 alerts of 5 that a CI run saw.
    assert {kind for kind, _pct in warnings} == {"endpoint.failing"}
    levels = [pct for _kind, pct in warnings]
    assert levels and levels == sorted(set(levels)) and set(levels) <= {50, 70, 90}, levels
    assert status_code == 200 and body["replayed"] == len(sent)
    assert body["endpoint"]["status"] == "active"
    assert (recovered["type"], recovered["data"]["reason"]) == ("endpoint.recovered", "enabled")


@pytest.mark.without_rabbitmq  # `hookline up`: the in-process broker
def test_embedded_hookline_up_runs_the_breaker_and_its_alerts_in_one_process(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/flaky", default=500)
    alerting = {
        "HOOKLINE_ALERT_WEBHOOK_URL": receiver.url("/alerts"),
        "HOOKLINE_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
        "HOOKLINE_SCHEDULER_INTERVAL_S": "0.2",
    }
    with hookline_up(tmp_path, **BREAKER, **alerting) as (api, env, cwd):
        key = cli(env, cwd, "tenants", "create", "acme")["api_key"]
        endpoint_id = new_endpoint(api, key, receiver.url("/flaky"))
        sent = send_events(api, key, 15)
        eventually(lambda: health(api, key, endpoint_id)["state"] != "closed", 30)
        receiver.wait_for("/alerts", 1, timeout_s=20)
        receiver.script("/flaky", default=200)
        eventually(lambda: health(api, key, endpoint_id)["state"] == "closed", 30)
        eventually(
            lambda: {r.headers["webhook-id"] for r in receiver.received("/flaky")} >= set(sent), 30
        )
        receiver.wait_for("/alerts", 2, timeout_s=20)
    kinds = [d["type"] for d in documents(receiver, "/alerts")]
    print(f"\nembedded: {len(sent)} events all delivered, alerts {kinds}")
    assert kinds == ["endpoint.failing", "endpoint.recovered"]


def channel_counts(
    slack: Receiver, pagerduty: Receiver, mailbox: Mailbox, receiver: Receiver
) -> dict[str, int]:
    return {
        "slack": len(slack.requests),
        "pagerduty": len(pagerduty.requests),
        "email": len(mailbox.messages),
        "webhook": len(receiver.received("/alerts")),
    }


def scrape(bind: str) -> str:
    with urllib.request.urlopen(f"http://{bind}/metrics", timeout=10) as response:
        return str(response.read().decode())
