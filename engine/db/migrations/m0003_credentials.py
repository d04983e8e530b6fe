"""Named API keys, per-tenant rate limits, and the shared rate-limit counters."""

TITLE = "credentials and rate limits"

# {json}: JSONB on PostgreSQL, TEXT on SQLite; {ts}: a UTC timestamp.
# rate_limit holds one row per bucket and fixed window; old windows are swept by the API.
DDL = """
ALTER TABLE api_key ADD COLUMN name VARCHAR(128);
ALTER TABLE tenant ADD COLUMN rate_limits {json};
CREATE INDEX api_key_tenant_active ON api_key (tenant_id, id) WHERE revoked_at IS NULL;
CREATE TABLE rate_limit (
    bucket_key VARCHAR(200) NOT NULL,
    window_start BIGINT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (bucket_key, window_start)
);
CREATE INDEX rate_limit_window ON rate_limit (window_start);
"""
