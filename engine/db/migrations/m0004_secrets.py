"""Secret rotation and endpoint verification.

`secret` and `previous_secret` hold `v1:<key id>:<data>` (AES-256-GCM, see
`engine.secretbox`). Rows written before encryption at rest keep their
plaintext `whsec_…` value, which is still read as is; no data migration is
needed: `hookline secrets rotate-key` seals every such value.
"""

TITLE = "endpoint secret rotation and verification"

DDL = """
ALTER TABLE endpoint ADD COLUMN previous_secret TEXT;
ALTER TABLE endpoint ADD COLUMN previous_secret_expires_at {ts};
ALTER TABLE endpoint ADD COLUMN verified_at {ts};
ALTER TABLE endpoint ADD COLUMN verification_attempted_at {ts};
ALTER TABLE endpoint ADD COLUMN verification_error TEXT;
"""
