"""Tables, behind one `DatabaseProxy` so PostgreSQL and SQLite share the models.

The DDL lives in `engine.db.migrations`, versioned; these classes only map rows.
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

# The status columns' vocabulary. What each state means, where rows start and which
# moves are allowed: `engine.deliveries.states` and `engine.endpoints.states`, the
# only places that change a status.
PENDING = "pending"
QUEUED = "queued"
DELIVERING = "delivering"
SCHEDULED = "scheduled"
SUCCEEDED = "succeeded"
QUARANTINED = "quarantined"
CANCELLED = "cancelled"
PARKED = "parked"
THROTTLED = "throttled"
PAUSED = "paused"
DELIVERY_STATES = (
    PENDING,
    QUEUED,
    DELIVERING,
    SCHEDULED,
    SUCCEEDED,
    QUARANTINED,
    CANCELLED,
    PARKED,
    THROTTLED,
    PAUSED,
)
OPEN_STATES = (PENDING, QUEUED, DELIVERING, SCHEDULED, PARKED, THROTTLED, PAUSED)

UNORDERED = "unordered"
FIFO = "fifo"
ORDERINGS = (UNORDERED, FIFO)

ENDPOINT_ACTIVE = "active"
ENDPOINT_DISABLED = "disabled"
ENDPOINT_UNVERIFIED = "unverified"
ENDPOINT_STATES = (ENDPOINT_ACTIVE, ENDPOINT_DISABLED, ENDPOINT_UNVERIFIED)

TENANT_ACTIVE = "active"
TENANT_SUSPENDED = "suspended"
TENANT_DELETING = "deleting"
TENANT_STATES = (TENANT_ACTIVE, TENANT_SUSPENDED, TENANT_DELETING)
REPLAY_RUNNING = "running"
REPLAY_FINISHED = "finished"
REPLAY_CANCELLED = "cancelled"
REPLAY_STATES = (REPLAY_RUNNING, REPLAY_FINISHED, REPLAY_CANCELLED)


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
    alert_channels = JSONField(null=True)  # per-tenant overrides of the alert channel settings
    # Only events of registered, unarchived types are accepted (`engine.events.catalog_cache`).
    strict_event_types = BooleanField(default=False)
    # Raised with every change of the tenant's event-type catalog; the API's caches poll it.
    event_types_generation = BigIntegerField(default=0)
    # `engine.tenancy.states`: only an active tenant's credentials are accepted.
    status = CharField(default=TENANT_ACTIVE)
    status_changed_at = DateTimeField(null=True)
    deletion = JSONField(null=True)  # an erasure's progress (`engine.lifecycle.erase`)
    # Days its events, deliveries and attempts are kept; None: `HOOKLINE_RETENTION_DAYS`.
    retention_days = IntegerField(null=True)


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
    secret = TextField()  # sealed by engine.secretbox; legacy rows hold plaintext
    # `auth` and `tls` to the receiver, sealed together (engine.endpoints.receiver_auth).
    receiver_auth = JSONField(null=True)
    previous_secret = TextField(null=True)  # signs beside `secret` until it expires
    previous_secret_expires_at = DateTimeField(null=True)
    verified_at = DateTimeField(null=True)
    verification_attempted_at = DateTimeField(null=True)
    verification_error = TextField(null=True)
    status = CharField(default=ENDPOINT_ACTIVE)
    disabled_reason = TextField(null=True)
    disabled_at = DateTimeField(null=True)
    breaker = JSONField(null=True)  # per-endpoint overrides of the breaker settings
    payload_filter = JSONField(null=True)  # `filter` in the API (engine.endpoints.payload_filter)
    transform = JSONField(null=True)  # {"jmespath": ...}: shapes the body it receives
    # Flow control (`engine.deliveries.flow`): null, no limit; `fifo`: one at a time, in order.
    rate_limit_per_s = IntegerField(null=True)
    max_in_flight = IntegerField(null=True)
    ordering = CharField(default=UNORDERED)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)
    # Paused by its owner since then (`engine.replays.pause`); None: not paused.
    paused_at = DateTimeField(null=True)


class Event(BaseModel):
    id = CharField(primary_key=True)
    tenant_id = CharField()
    event_type = CharField(max_length=128)
    payload = TextField()  # compact JSON text, kept byte for byte
    idempotency_key = CharField(max_length=255, null=True)
    created_at = DateTimeField(default=utcnow)
    # The fan-out lease the event was stored with: a trigger copies it to `event_fan_out`
    # (where an event stored without one is due at once).
    fan_out_lease_until = DateTimeField(null=True)
    # The version of its type's schema the payload passed; None when its type had none.
    schema_version = IntegerField(null=True)
    # Sent by `POST /v1/endpoints/{id}/test` to one endpoint: never fanned out (migration 10).
    test = BooleanField(default=False)


class EventFanOut(BaseModel):
    """An event not yet fanned out, and until when its fan-out is leased (then the scheduler's)."""

    event_id = CharField(primary_key=True)
    lease_until = DateTimeField()

    class Meta:
        table_name = "event_fan_out"


class EventKey(BaseModel):
    """An idempotency key a tenant used, and the event that took it (migration 15)."""

    tenant_id = CharField()
    idempotency_key = CharField(max_length=255)
    event_id = CharField()
    created_at = DateTimeField()

    class Meta:
        table_name = "event_key"
        primary_key = CompositeKey("tenant_id", "idempotency_key")


class EventType(BaseModel):
    """A declared event type of a tenant: its description, schema and examples."""

    id = CharField(primary_key=True)
    tenant_id = CharField()
    name = CharField(max_length=128)
    description = TextField(null=True)
    schema = TextField(null=True)  # a JSON Schema (2020-12) as JSON text
    examples = JSONField(default=list)
    version = IntegerField(default=1)  # +1 on every change of `schema`
    archived = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "event_type"


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
    # A test event's delivery: left out of the breaker and of the metrics of real traffic.
    test = BooleanField(default=False)
    # The replay that last put it back in play, and the state it took it from (restored
    # if the replay is cancelled before it is sent); `engine.replays`.
    replay_id = CharField(null=True)
    replayed_from = CharField(null=True)
    # When a replay or a resume put it back in play, and the attempts made before: its
    # retry schedule and age limit count from there (None: from its event).
    restarted_at = DateTimeField(null=True)
    restart_attempts = IntegerField(default=0)


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
    # The body sent when a transform shaped it; null: the event's standard envelope
    # (rebuilt from the event when read), or nothing was sent (`transform_error`).
    request_body = TextField(null=True)
    # The replay whose pacing started this attempt's delivery again; None: none did.
    replay_id = CharField(null=True)


class Replay(BaseModel):
    """Past deliveries sent again, or (a backfill) for the first time, paced (`engine.replays`)."""

    id = CharField(primary_key=True)
    tenant_id = CharField()
    kind = CharField(max_length=16)  # replay, backfill, recover
    endpoint_id = CharField(null=True)  # None: every endpoint of the tenant
    event_types = JSONField(null=True)
    statuses = JSONField(null=True)
    since = DateTimeField()
    until = DateTimeField(null=True)
    rate_per_s = IntegerField()
    status = CharField(default=REPLAY_RUNNING)
    matched = IntegerField(default=0)
    cancelled = IntegerField(default=0)  # given back by a cancel before they were sent
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)


class ReplayLane(BaseModel):
    """One endpoint's pacing of what is replayed to it: slots at `rate_per_s`."""

    endpoint_id = CharField(primary_key=True)
    rate_per_s = FloatField()
    next_slot_at = DateTimeField(null=True)  # its next free slot (`engine.deliveries.slots`)
    waiting = BooleanField(default=False)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "replay_lane"


class RateLimitWindow(BaseModel):
    """Hits leased from one rate-limit bucket in one fixed window (Unix seconds).

    API processes lease hits in chunks (`engine.tenancy.limiter`), so `hits` may pass
    the limit by up to a chunk per process; only the part below the limit is granted.
    """

    bucket_key = CharField(max_length=200)
    window_start = BigIntegerField()
    hits = IntegerField()

    class Meta:
        table_name = "rate_limit"
        primary_key = CompositeKey("bucket_key", "window_start")


class EndpointHealth(BaseModel):
    """One endpoint's circuit breaker, counters, and the work its supervisor has pending."""

    endpoint_id = CharField(primary_key=True)
    state = CharField(default="closed")
    transition = IntegerField(default=0)  # +1 on every state change; keys alerts
    consecutive_failures = IntegerField(default=0)
    last_success_at = DateTimeField(null=True)
    last_failure_at = DateTimeField(null=True)
    opened_at = DateTimeField(null=True)
    outage_started_at = DateTimeField(null=True)  # first opening since the breaker was closed
    outage = IntegerField(null=True)  # the transition that started the outage
    cooldown_s = FloatField(null=True)
    next_probe_at = DateTimeField(null=True)
    probe_delivery_id = CharField(null=True)
    probe_started_at = DateTimeField(null=True)
    warnings_sent = IntegerField(default=0)
    due_at = DateTimeField(null=True)  # when the tick must look at this breaker again
    releasing = BooleanField(default=False)  # parked deliveries are being released
    release_next_at = DateTimeField(null=True)
    quarantined_pending = IntegerField(default=0)  # quarantined since the last digest
    quarantined_since = DateTimeField(null=True)
    digest_seq = IntegerField(default=0)
    digest_sent_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "endpoint_health"


class EndpointFlow(BaseModel):
    """What every worker shares about one endpoint's flow (`engine.deliveries.flow`).

    Its next free slot (`engine.deliveries.slots`), the concurrency adaptive control
    learnt (None: not limited by it), a pause a `Retry-After` asked for, and whether
    deliveries wait as `throttled`.
    """

    endpoint_id = CharField(primary_key=True)
    next_slot_at = DateTimeField(null=True)
    concurrency = IntegerField(null=True)
    concurrency_reason = TextField(null=True)
    concurrency_changed_at = DateTimeField(null=True)
    fast_streak = IntegerField(default=0)
    paused_until = DateTimeField(null=True)
    pause_reason = TextField(null=True)
    waiting = BooleanField(default=False)
    # Its tenant is suspended or being deleted: nothing is released (`engine.lifecycle`).
    held = BooleanField(default=False)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "endpoint_flow"


class HealthBucket(BaseModel):
    """Successes and failures of one endpoint in one 10-second bucket (Unix seconds)."""

    endpoint_id = CharField()
    bucket_start = BigIntegerField()
    successes = IntegerField(default=0)
    failures = IntegerField(default=0)

    class Meta:
        table_name = "endpoint_health_bucket"
        primary_key = CompositeKey("endpoint_id", "bucket_start")


class AlertRecord(BaseModel):
    """An alert, emitted once per (endpoint, kind, dedup), and the channels it reached."""

    id = CharField(primary_key=True)
    tenant_id = CharField()
    endpoint_id = CharField()
    kind = CharField(max_length=32)
    dedup = CharField(max_length=64)
    facts = JSONField()
    sent = JSONField(default=list)
    created_at = DateTimeField(default=utcnow)
    published_at = DateTimeField(null=True)

    class Meta:
        table_name = "alert"


class AlertSend(BaseModel):
    """One channel's claim on an alert, taken before it is dialled; `sent_at` once it took it."""

    alert_id = CharField()
    channel = CharField(max_length=16)
    claim = CharField()  # the claimant's token: who may mark it sent or give it back
    claimed_at = DateTimeField()
    sent_at = DateTimeField(null=True)

    class Meta:
        table_name = "alert_send"
        primary_key = CompositeKey("alert_id", "channel")


class SupervisedMessage(BaseModel):
    """An outcome message already folded into the breakers, so a redelivery is skipped."""

    message_id = CharField(primary_key=True)
    folded_at = DateTimeField()

    class Meta:
        table_name = "supervised_message"


class AuditEntry(BaseModel):
    """One change made through the API: who, when, the route, its target, the fields changed.

    `tenant_id` null: the admin's record of a tenant created or deleted (`engine.audit`).
    """

    id = CharField(primary_key=True)
    tenant_id = CharField(null=True)
    actor_kind = CharField(max_length=16)  # api_key, jwt, oauth_client or admin
    actor_id = CharField(max_length=64)
    actor_subject = CharField(max_length=255, null=True)  # a JWT's `sub`
    action = CharField(max_length=255)  # "PATCH /v1/endpoints/{endpoint_id}"
    target_id = CharField(max_length=255, null=True)
    status_code = IntegerField()
    changes = JSONField(null=True)  # secrets only as "changed"
    request_id = CharField(max_length=128, null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "audit_log"


class OAuthClient(BaseModel):
    """A machine client of Hookline's token endpoint (`engine.tenancy.oauth`)."""

    id = CharField(primary_key=True)  # the client_id
    tenant_id = CharField()
    name = CharField(max_length=128)
    scopes = JSONField(default=list)
    secret_hash = CharField()
    created_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)

    class Meta:
        table_name = "oauth_client"


class OAuthKey(BaseModel):
    """A key Hookline signs its access tokens with (ES256), its private half sealed."""

    kid = CharField(primary_key=True)
    private_key = TextField()  # PEM, sealed by engine.secretbox
    public_jwk = JSONField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "oauth_key"


class OAuthRevokedToken(BaseModel):
    """An access token revoked before it expired (RFC 7009), kept until it would have."""

    jti = CharField(primary_key=True)
    tenant_id = CharField()
    client_id = CharField()
    expires_at = DateTimeField()
    revoked_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "oauth_revoked_token"


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_version"


MODELS = (
    Tenant,
    ApiKey,
    Endpoint,
    Event,
    EventKey,
    EventType,
    Delivery,
    Attempt,
    Replay,
    ReplayLane,
    RateLimitWindow,
    EndpointHealth,
    EndpointFlow,
    HealthBucket,
    AlertRecord,
    AlertSend,
    SupervisedMessage,
    AuditEntry,
    OAuthClient,
    OAuthKey,
    OAuthRevokedToken,
    SchemaVersion,
)
