"""Secret rotation, encryption at rest, endpoint verification and the SSRF guard, on real
API, worker and scheduler processes with PostgreSQL and RabbitMQ, delivering to a receiver
on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from standardwebhooks.webhooks import Webhook

from tests.factories import eventually
from tests.integration.conftest import Api, Processes, free_port, stack_env
from tests.receiver import Receiver
from tests.services import amqp_url_for, new_database, new_vhost

pytestmark = pytest.mark.integration


def create_endpoint(api: Api, key: str, url: str, **fields: Any) -> dict[str, Any]:
    status, body = api.call("POST", "/v1/endpoints", {"url": url, **fields}, key=key)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def publish(api: Api, key: str, event_type: str = "order.paid", **payload: Any) -> str:
    status, body = api.call(
        "POST", "/v1/events", {"event_type": event_type, "payload": payload}, key=key
    )
    assert status == 202, body
    return str(body["id"])


def endpoint(api: Api, key: str, endpoint_id: str) -> dict[str, Any]:
    status, body = api.call("GET", f"/v1/endpoints/{endpoint_id}", key=key)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def first_attempt(api: Api, key: str, event_id: str) -> dict[str, Any] | None:
    status, body = api.call("GET", f"/v1/deliveries?event_id={event_id}", key=key)
    assert status == 200, body
    if not body["data"]:
        return None
    delivery_id = body["data"][0]["id"]
    status, attempts = api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", key=key)
    assert status == 200, attempts
    return attempts["data"][-1] if attempts["data"] else None


def stored_secrets(pg_url: str, endpoint_id: str) -> tuple[str, str | None]:
    with psycopg2.connect(pg_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT secret, previous_secret FROM endpoint WHERE id = %s", (endpoint_id,))
        row = cursor.fetchone()
    connection.close()
    assert row is not None
    return row[0], row[1]


# --- rotation and encryption at rest ----------------------------------------------------


def test_after_a_rotation_each_request_verifies_with_the_old_or_the_new_secret(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    created = create_endpoint(api, key, receiver.url("/rotating"))
    status, rotated = api.call(
        "POST", f"/v1/endpoints/{created['id']}/secret/rotate", {"grace_period_s": 3600}, key=key
    )
    assert status == 200, rotated
    assert rotated["previous_secret"] == created["secret"]

    publish(api, key, amount=42)

    [request] = receiver.wait_for("/rotating", 1)
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (created["secret"], rotated["secret"]):
        assert Webhook(secret).verify(request.body, request.headers)["data"] == {"amount": 42}


def test_secrets_are_encrypted_in_postgresql(
    stack: tuple[Api, Processes], pg_migrated: str, receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    created = create_endpoint(api, key, receiver.url("/sealed"))
    status, rotated = api.call("POST", f"/v1/endpoints/{created['id']}/secret/rotate", key=key)
    assert status == 200, rotated

    secret, previous = stored_secrets(pg_migrated, created["id"])

    assert secret.startswith("v1:") and previous is not None and previous.startswith("v1:")
    for plaintext in (created["secret"], rotated["secret"]):
        assert plaintext not in secret + previous
        assert plaintext.removeprefix("whsec_") not in secret + previous


# --- verification -----------------------------------------------------------------------


def test_an_endpoint_that_echoes_the_challenge_becomes_active_and_then_receives_events(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    receiver.echo_challenge("/echo")
    created = create_endpoint(api, key, receiver.url("/echo"), verify=True)
    assert created["status"] == "unverified"

    eventually(lambda: endpoint(api, key, created["id"])["status"] == "active")

    [challenge] = receiver.received("/echo")
    verified = Webhook(created["secret"]).verify(challenge.body, challenge.headers)
    assert verified["type"] == "webhook.verification" and verified["data"]["challenge"]
    assert endpoint(api, key, created["id"])["verified_at"] is not None
    publish(api, key, n=1)
    requests = receiver.wait_for("/echo", 2)
    assert Webhook(created["secret"]).verify(requests[1].body, requests[1].headers)["data"] == {
        "n": 1
    }


def test_an_endpoint_that_does_not_echo_stays_unverified_and_receives_nothing(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    created = create_endpoint(api, key, receiver.url("/silent"), verify=True)
    witness = create_endpoint(api, key, receiver.url("/witness"))

    failed = eventually(lambda: endpoint(api, key, created["id"])["verification_attempted_at"])

    assert failed
    row = endpoint(api, key, created["id"])
    assert row["status"] == "unverified" and "challenge" in row["verification_error"]
    event_id = publish(api, key, n=2)
    receiver.wait_for("/witness", 1)  # the event was fanned out
    # The fan-out sends its first attempts inside the transaction that creates their rows
    # (early_first_attempts): read the event once they are in.
    event = eventually(lambda: _with_deliveries(api, key, event_id))
    assert [d["endpoint_id"] for d in event["deliveries"]] == [witness["id"]]
    time.sleep(0.5)
    assert len(receiver.received("/silent")) == 1  # the challenge, nothing else


def test_verify_tries_again_and_succeeds_once_the_endpoint_echoes(
    stack: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, _ = stack
    key = api.tenant()
    created = create_endpoint(api, key, receiver.url("/late"), verify=True)
    eventually(lambda: endpoint(api, key, created["id"])["verification_error"])
    receiver.echo_challenge("/late")

    status, body = api.call("POST", f"/v1/endpoints/{created['id']}/verify", key=key)

    assert status == 202, body
    eventually(lambda: endpoint(api, key, created["id"])["status"] == "active")
    assert endpoint(api, key, created["id"])["verification_error"] is None


# --- the SSRF guard in a worker that refuses private networks ---------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: Any) -> Iterator[tuple[Api, Processes]]:
    """An API that registers loopback URLs, on a database and vhost of their own.

    Workers started in each test refuse private networks, so the session stack
    (whose worker allows them) never sees these deliveries.
    """
    with new_database("_guard") as pg_url, new_vhost("-guard") as vhost:
        port = free_port()
        env = stack_env(pg_url, amqp_url_for(vhost), HOOKLINE_BIND=f"127.0.0.1:{port}")
        logs: Path = tmp_path_factory.mktemp("guard-logs")
        subprocess.run(
            [sys.executable, "-m", "api.cli", "migrate"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        processes = Processes(env, logs)
        processes.start("api")
        api = Api(f"http://127.0.0.1:{port}")
        try:
            api.wait_healthy()
            yield api, processes
        finally:
            processes.stop_all()


def start_workers(processes: Processes, **env: str) -> None:
    settings = {
        "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS": "false",
        # Fresh ports: the previous test's processes may still hold theirs for a moment.
        "HOOKLINE_WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
        "HOOKLINE_SCHEDULER_METRICS_BIND": f"127.0.0.1:{free_port()}",
        **env,
    }
    processes.start("worker", env=settings)
    processes.start("scheduler", env=settings)


def stop_workers(processes: Processes) -> None:
    # SIGTERM to dramatiq's parent alone: signalled through the whole group, its worker
    # processes get the signal twice, kill themselves, and the parent may hang.
    for name in ("worker", "scheduler"):
        child = processes.children[name]
        child.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=30)
        processes.stop(name)


def test_a_worker_refuses_loopback_and_records_the_attempt(
    guarded: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, processes = guarded
    key = api.tenant()
    literal = create_endpoint(api, key, receiver.url("/literal"), event_types=["a.literal"])
    named = create_endpoint(
        api, key, f"http://localhost:{receiver.port}/named", event_types=["a.named"]
    )
    start_workers(processes)
    try:
        by_literal = publish(api, key, "a.literal")
        by_name = publish(api, key, "a.named")

        for event_id, address in ((by_literal, "127.0.0.1"), (by_name, "")):
            attempt = eventually(lambda e=event_id: first_attempt(api, key, e), timeout_s=30)
            assert attempt["outcome"] == "failure", attempt
            assert attempt["error_class"] == "refused_address", attempt
            assert "loopback" in attempt["error_detail"] and address in attempt["error_detail"]
            assert attempt["status_code"] is None
        time.sleep(0.5)
        assert receiver.requests == []
    finally:
        stop_workers(processes)
        for row in (literal, named):
            api.call("DELETE", f"/v1/endpoints/{row['id']}", key=key)


def test_a_verification_request_is_refused_by_the_same_guard(
    guarded: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, processes = guarded
    key = api.tenant()
    receiver.echo_challenge("/verify-me")
    start_workers(processes)
    try:
        created = create_endpoint(api, key, receiver.url("/verify-me"), verify=True)

        # The workers were just started: a starved CI box took more than 20 s to run them.
        error = eventually(
            lambda: endpoint(api, key, created["id"])["verification_error"], timeout_s=60
        )

        assert "refused to connect" in error or "loopback" in error
        assert endpoint(api, key, created["id"])["status"] == "unverified"
        assert receiver.requests == []
    finally:
        stop_workers(processes)


def test_an_allowed_cidr_lets_a_worker_reach_loopback(
    guarded: tuple[Api, Processes], receiver: Receiver
) -> None:
    api, processes = guarded
    key = api.tenant()
    created = create_endpoint(api, key, receiver.url("/allowed"))
    start_workers(processes, HOOKLINE_ALLOWED_CIDRS="127.0.0.0/8")
    try:
        publish(api, key, n=3)

        try:
            [request] = receiver.wait_for("/allowed", 1, timeout_s=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{processes.tail('worker')}") from None

        assert Webhook(created["secret"]).verify(request.body, request.headers)["data"] == {"n": 3}
    finally:
        stop_workers(processes)


def _with_deliveries(api: Api, key: str, event_id: str) -> dict[str, Any] | None:
    """The event, once its deliveries are committed."""
    status, event = api.call("GET", f"/v1/events/{event_id}", key=key)
    assert status == 200
    return event if event["deliveries"] else None
