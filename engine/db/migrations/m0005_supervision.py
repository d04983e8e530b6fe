"""Circuit breakers, parked deliveries, disable/enable, and alerts recorded once.

`endpoint_health` holds one breaker per endpoint (created on its first
reported outcome); `endpoint_health_bucket` the sliding window as 10-second
buckets of successes and failures; `alert` every alert emitted, unique per
(endpoint, kind, dedup) so a retried tick or message never sends one twice.
A `parked` delivery waits for its endpoint's breaker to close (or for the
endpoint to be enabled) without spending an attempt.
"""

TITLE = "supervision: breakers, parking, alerts"

# {json}: JSONB on PostgreSQL, TEXT on SQLite; {ts}: a UTC timestamp.
DDL = """
ALTER TABLE endpoint ADD COLUMN breaker {json};
ALTER TABLE endpoint ADD COLUMN disabled_at {ts};
ALTER TABLE tenant ADD COLUMN alert_channels {json};
CREATE TABLE endpoint_health (
    endpoint_id VARCHAR(40) PRIMARY KEY REFERENCES endpoint (id) ON DELETE CASCADE,
    state VARCHAR(16) NOT NULL,
    transition INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_success_at {ts},
    last_failure_at {ts},
    opened_at {ts},
    outage_started_at {ts},
    outage INTEGER,
    cooldown_s DOUBLE PRECISION,
    next_probe_at {ts},
    probe_delivery_id VARCHAR(40),
    probe_started_at {ts},
    warnings_sent INTEGER NOT NULL DEFAULT 0,
    due_at {ts},
    releasing BOOLEAN NOT NULL DEFAULT FALSE,
    release_next_at {ts},
    quarantined_pending INTEGER NOT NULL DEFAULT 0,
    quarantined_since {ts},
    digest_seq INTEGER NOT NULL DEFAULT 0,
    digest_sent_at {ts},
    updated_at {ts} NOT NULL
);
CREATE INDEX endpoint_health_due ON endpoint_health (due_at) WHERE state <> 'closed';
CREATE INDEX endpoint_health_releasing ON endpoint_health (endpoint_id) WHERE releasing;
CREATE INDEX endpoint_health_digest ON endpoint_health (endpoint_id)
    WHERE quarantined_pending > 0;
CREATE TABLE endpoint_health_bucket (
    endpoint_id VARCHAR(40) NOT NULL REFERENCES endpoint (id) ON DELETE CASCADE,
    bucket_start BIGINT NOT NULL,
    successes INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, bucket_start)
);
CREATE INDEX endpoint_health_bucket_start ON endpoint_health_bucket (bucket_start);
CREATE TABLE alert (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    endpoint_id VARCHAR(40) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    dedup VARCHAR(64) NOT NULL,
    facts {json} NOT NULL,
    sent {json} NOT NULL,
    created_at {ts} NOT NULL,
    published_at {ts}
);
CREATE UNIQUE INDEX alert_once ON alert (endpoint_id, kind, dedup);
CREATE INDEX alert_unpublished ON alert (created_at) WHERE published_at IS NULL;
CREATE INDEX delivery_parked ON delivery (endpoint_id, id) WHERE status = 'parked';
"""
