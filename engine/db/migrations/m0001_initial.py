"""Tenants, API keys, endpoints, events, deliveries and attempts."""

TITLE = "tenants, keys, endpoints, events, deliveries"

# {json}: JSONB on PostgreSQL, TEXT on SQLite; {ts}: a UTC timestamp.
DDL = """
CREATE TABLE tenant (
    id VARCHAR(40) PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    created_at {ts} NOT NULL
);
CREATE TABLE api_key (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key_hash VARCHAR(128) NOT NULL UNIQUE,
    prefix VARCHAR(16) NOT NULL,
    scopes {json} NOT NULL,
    created_at {ts} NOT NULL,
    revoked_at {ts}
);
CREATE INDEX api_key_tenant_id ON api_key (tenant_id);
CREATE TABLE endpoint (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT,
    event_types {json} NOT NULL,
    headers {json} NOT NULL,
    metadata {json} NOT NULL,
    retry_schedule {json},
    secret TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    disabled_reason TEXT,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    deleted_at {ts}
);
CREATE INDEX endpoint_tenant_id ON endpoint (tenant_id, id);
CREATE TABLE event (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    event_type VARCHAR(128) NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key VARCHAR(255),
    created_at {ts} NOT NULL,
    fanned_out_at {ts},
    fan_out_lease_until {ts}
);
CREATE INDEX event_tenant_id ON event (tenant_id, id);
CREATE UNIQUE INDEX event_idempotency ON event (tenant_id, idempotency_key);
CREATE INDEX event_unfanned ON event (fan_out_lease_until) WHERE fanned_out_at IS NULL;
CREATE TABLE delivery (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    event_id VARCHAR(40) NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    endpoint_id VARCHAR(40) NOT NULL REFERENCES endpoint (id) ON DELETE CASCADE,
    event_type VARCHAR(128) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {ts},
    lease_until {ts},
    last_attempt_at {ts},
    last_status_code INTEGER,
    last_error TEXT,
    quarantine_reason TEXT,
    event_created_at {ts} NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL
);
CREATE UNIQUE INDEX delivery_event_endpoint ON delivery (event_id, endpoint_id);
CREATE INDEX delivery_tenant_id ON delivery (tenant_id, id);
CREATE INDEX delivery_endpoint ON delivery (endpoint_id, status);
CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX delivery_lease ON delivery (lease_until)
    WHERE status IN ('pending', 'queued', 'delivering');
CREATE TABLE attempt (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    delivery_id VARCHAR(40) NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at {ts} NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    status_code INTEGER,
    outcome VARCHAR(16) NOT NULL,
    error_class VARCHAR(32),
    error_detail TEXT,
    response_body TEXT,
    response_body_truncated BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX attempt_delivery_number ON attempt (delivery_id, number);
"""
