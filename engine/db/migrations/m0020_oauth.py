"""Hookline as an OAuth2 authorization server: machine clients, signing keys, revocations."""

TITLE = "oauth2 clients, signing keys and revoked tokens"

DDL = """
CREATE TABLE oauth_client (
    id VARCHAR(255) PRIMARY KEY,
    tenant_id VARCHAR(255) NOT NULL,
    name VARCHAR(128) NOT NULL,
    scopes {json} NOT NULL,
    secret_hash VARCHAR(255) NOT NULL,
    created_at {ts} NOT NULL,
    deleted_at {ts}
);
CREATE INDEX oauth_client_tenant ON oauth_client (tenant_id, id) WHERE deleted_at IS NULL;
CREATE TABLE oauth_key (
    kid VARCHAR(255) PRIMARY KEY,
    private_key TEXT NOT NULL,
    public_jwk {json} NOT NULL,
    created_at {ts} NOT NULL
);
CREATE TABLE oauth_revoked_token (
    jti VARCHAR(255) PRIMARY KEY,
    tenant_id VARCHAR(255) NOT NULL,
    client_id VARCHAR(255) NOT NULL,
    expires_at {ts} NOT NULL,
    revoked_at {ts} NOT NULL
);
CREATE INDEX oauth_revoked_token_expires ON oauth_revoked_token (expires_at)
"""
