"""Rows to JSON documents, the shapes `schemas/` describes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from engine import sealed_fields
from engine.breakers.store import HealthView
from engine.db.models import (
    ApiKey,
    Attempt,
    AuditEntry,
    Delivery,
    Endpoint,
    Event,
    EventType,
    Tenant,
)
from engine.db.pages import Page
from engine.deliveries.flow_view import FlowView
from engine.endpoints import receiver_auth
from engine.endpoints.secrets import SecretView
from engine.replays.matching import Counts
from engine.replays.replays import Progress
from engine.secretbox import SecretBox


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with a Z, or None."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def tenant(row: Tenant, api_key: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "api_key": api_key,
        "created_at": timestamp(row.created_at),
    }


def tenant_detail(row: Tenant, box: SecretBox) -> dict[str, Any]:
    """A tenant for the admin; its alert channels' secrets as "***" and fingerprints."""
    channels = sealed_fields.open_channels(row.alert_channels, box, row.id)
    shown, fingerprints = sealed_fields.masked(channels, box, sealed_fields.ALERT_SECRETS)
    return {
        "id": row.id,
        "name": row.name,
        "rate_limits": row.rate_limits,
        "alert_channels": shown,
        "alert_channel_fingerprints": fingerprints,
        "strict_event_types": bool(row.strict_event_types),
        "retention_days": row.retention_days,
        "status": row.status,
        "status_changed_at": timestamp(row.status_changed_at),
        "deletion": row.deletion,
        "created_at": timestamp(row.created_at),
    }


def audit_entry(row: AuditEntry) -> dict[str, Any]:
    """One change made through the API; secrets only as "changed"."""
    method, _, route = row.action.partition(" ")
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "actor": {"kind": row.actor_kind, "id": row.actor_id, "subject": row.actor_subject},
        "action": row.action,
        "method": method,
        "route": route,
        "target_id": row.target_id,
        "status_code": row.status_code,
        "changes": row.changes,
        "request_id": row.request_id,
        "created_at": timestamp(row.created_at),
    }


def key(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes),
        "created_at": timestamp(row.created_at),
    }


def endpoint(row: Endpoint, box: SecretBox) -> dict[str, Any]:
    """An endpoint; its custom headers' values and its receiver credentials' secrets as "***"
    and fingerprints, never in plaintext."""
    headers, fingerprints = sealed_fields.masked(
        sealed_fields.open_headers(row.headers, box, row.id), box
    )
    credentials = receiver_auth.masked(receiver_auth.opened(row.receiver_auth, box, row.id), box)
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "event_types": list(row.event_types or []),
        "headers": headers,
        "header_fingerprints": fingerprints,
        **credentials,
        "metadata": dict(row.metadata or {}),
        "retry_schedule": row.retry_schedule,
        "breaker": row.breaker,
        "filter": row.payload_filter,
        "transform": row.transform,
        "rate_limit_per_s": row.rate_limit_per_s,
        "max_in_flight": row.max_in_flight,
        "ordering": row.ordering,
        "status": row.status,
        "paused": row.paused_at is not None,
        "paused_at": timestamp(row.paused_at),
        "disabled_reason": row.disabled_reason,
        "verified_at": timestamp(row.verified_at),
        "verification_attempted_at": timestamp(row.verification_attempted_at),
        "verification_error": row.verification_error,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }


def endpoint_health(view: HealthView, flow: FlowView) -> dict[str, Any]:
    """An endpoint's breaker, window and parked deliveries, and its flow control."""
    return {
        "endpoint_id": view.endpoint_id,
        "status": view.status,
        "state": view.state,
        "failure_rate": view.failure_rate,
        "window_attempts": view.window_attempts,
        "consecutive_failures": view.consecutive_failures,
        "last_success_at": timestamp(view.last_success_at),
        "last_failure_at": timestamp(view.last_failure_at),
        "opened_at": timestamp(view.opened_at),
        "next_probe_at": timestamp(view.next_probe_at),
        "disables_at": timestamp(view.disables_at),
        "parked": view.parked,
        "flow": {
            "rate_limit_per_s": flow.rate_limit_per_s,
            "max_in_flight": flow.max_in_flight,
            "ordering": flow.ordering,
            "concurrency_limit": flow.concurrency_limit,
            "concurrency_reason": flow.concurrency_reason,
            "concurrency_changed_at": timestamp(flow.concurrency_changed_at),
            "paused_until": timestamp(flow.paused_until),
            "pause_reason": flow.pause_reason,
            "in_flight": flow.in_flight,
            "throttled": flow.throttled,
        },
    }


def endpoint_secret(view: SecretView) -> dict[str, Any]:
    """The current secret, and the previous one only while it still signs."""
    body: dict[str, Any] = {"secret": view.secret}
    if view.previous_secret is not None:
        body["previous_secret"] = view.previous_secret
        body["previous_secret_expires_at"] = timestamp(view.previous_secret_expires_at)
    return body


def event(row: Event) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_type": row.event_type,
        "payload": json.loads(row.payload),
        "idempotency_key": row.idempotency_key,
        "schema_version": row.schema_version,
        "created_at": timestamp(row.created_at),
        "test": bool(row.test),
    }


def event_type(row: EventType) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "schema": None if row.schema is None else json.loads(row.schema),
        "examples": list(row.examples or []),
        "version": row.version,
        "archived": bool(row.archived),
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }


def delivery_summary(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": timestamp(row.next_attempt_at),
        "last_status_code": row.last_status_code,
    }


def delivery(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "endpoint_id": row.endpoint_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": timestamp(row.next_attempt_at),
        "last_attempt_at": timestamp(row.last_attempt_at),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "quarantine_reason": row.quarantine_reason,
        "quarantined_at": timestamp(row.quarantined_at),
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "test": bool(row.test),
        "replay_id": row.replay_id,
    }


def attempt(row: Attempt, request_body: str | None) -> dict[str, Any]:
    """An attempt, with the body it sent (`engine.deliveries.log.sent_body`)."""
    return {
        "id": row.id,
        "delivery_id": row.delivery_id,
        "number": row.number,
        "started_at": timestamp(row.started_at),
        "duration_ms": row.duration_ms,
        "status_code": row.status_code,
        "outcome": row.outcome,
        "error_class": row.error_class,
        "error_detail": row.error_detail,
        "response_body": row.response_body,
        "response_body_truncated": bool(row.response_body_truncated),
        "request_body": request_body,
        "transformed": row.request_body is not None,
        "replay_id": row.replay_id,
    }


def replay(progress: Progress) -> dict[str, Any]:
    """A replay and how far it got (`engine.replays.replays.progress`)."""
    row = progress.replay
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "endpoint_id": row.endpoint_id,
        "event_types": row.event_types,
        "statuses": row.statuses,
        "since": timestamp(row.since),
        "until": timestamp(row.until),
        "rate_per_s": row.rate_per_s,
        "matched": row.matched,
        "queued": progress.queued,
        "succeeded": progress.succeeded,
        "failed": progress.failed,
        "cancelled": progress.cancelled,
        "created_at": timestamp(row.created_at),
        "finished_at": timestamp(row.finished_at),
    }


def dry_run(counts: Counts) -> dict[str, Any]:
    """What a replay or backfill would send."""
    return {
        "matched": counts.matched,
        "by_endpoint": counts.by_endpoint,
        "by_event_type": counts.by_event_type,
    }


def page(result: Page, render: Any) -> dict[str, Any]:
    """A list response: `{"data": [...], "next_cursor": ...}`."""
    return {"data": [render(row) for row in result.items], "next_cursor": result.next_cursor}
