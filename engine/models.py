"""Tables, behind one `DatabaseProxy` so PostgreSQL and SQLite share the models.

The DDL lives in `engine.migrations`, versioned; these classes only map rows.
Timestamps are naive UTC datetimes; ids are prefixed, time-sortable strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    IntegerField,
    JSONField,
    Model,
    TextField,
)

db: Any = DatabaseProxy()

# Delivery states. `pending`: created, not yet published; `queued`: published, lease running;
# `delivering`: claimed by a worker; `scheduled`: waiting for next_attempt_at.
PENDING = "pending"
QUEUED = "queued"
DELIVERING = "delivering"
SCHEDULED = "scheduled"
SUCCEEDED = "succeeded"
QUARANTINED = "quarantined"
CANCELLED = "cancelled"
DELIVERY_STATES = (PENDING, QUEUED, DELIVERING, SCHEDULED, SUCCEEDED, QUARANTINED, CANCELLED)
OPEN_STATES = (PENDING, QUEUED, DELIVERING, SCHEDULED)

ENDPOINT_ACTIVE = "active"
ENDPOINT_DISABLED = "disabled"
ENDPOINT_UNVERIFIED = "unverified"


def utcnow() -> dt.datetime:
    """Now, as the naive UTC datetime every table stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Tenant(BaseModel):
    id = CharField(primary_key=True)
    name = CharField(max_length=128)
    created_at = DateTimeField(default=utcnow)
    rate_limits = JSONField(null=True)  # per-tenant overrides of the rate-limit settings


class ApiKey(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField(index=True)
    key_hash = CharField(unique=True)
    prefix = CharField()
    name = CharField(max_length=128, null=True)
    scopes = JSONField(default=list)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "api_key"


class Endpoint(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField()
    url = TextField()
    description = TextField(null=True)
    event_types = JSONField(default=list)
    headers = JSONField(default=dict)
    metadata = JSONField(default=dict)
    retry_schedule = JSONField(null=True)
    secret = TextField()
    status = CharField(default=ENDPOINT_ACTIVE)
    disabled_reason = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)


class Event(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField()
    event_type = CharField(max_length=128)
    payload = TextField()  # compact JSON text, kept byte for byte
    idempotency_key = CharField(max_length=255, null=True)
    created_at = DateTimeField(default=utcnow)
    fanned_out_at = DateTimeField(null=True)
    fan_out_lease_until = DateTimeField(null=True)


class Delivery(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField()
    event_id = CharField()
    endpoint_id = CharField()
    event_type = CharField(max_length=128)
    status = CharField(default=PENDING)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(null=True)
    lease_until = DateTimeField(null=True)
    last_attempt_at = DateTimeField(null=True)
    last_status_code = IntegerField(null=True)
    last_error = TextField(null=True)
    quarantine_reason = TextField(null=True)
    quarantined_at = DateTimeField(null=True)
    quarantine_published_at = DateTimeField(null=True)
    event_created_at = DateTimeField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class Attempt(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField()
    delivery_id = CharField()
    number = IntegerField()
    started_at = DateTimeField()
    duration_ms = FloatField()
    status_code = IntegerField(null=True)
    outcome = CharField()
    error_class = CharField(null=True)
    error_detail = TextField(null=True)
    response_body = TextField(null=True)
    response_body_truncated = BooleanField(default=False)


class RateLimitWindow(BaseModel):
    """Hits on one rate-limit bucket in one fixed window (Unix seconds)."""

    bucket_key = CharField(max_length=200)
    window_start = BigIntegerField()
    hits = IntegerField()

    class Meta:
        table_name = "rate_limit"
        primary_key = CompositeKey("bucket_key", "window_start")


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_version"


MODELS = (Tenant, ApiKey, Endpoint, Event, Delivery, Attempt, RateLimitWindow, SchemaVersion)
