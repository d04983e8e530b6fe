"""When a delivery was quarantined, and whether its copy reached the quarantine queue."""

TITLE = "quarantine timestamps"

DDL = """
ALTER TABLE delivery ADD COLUMN quarantined_at {ts};
ALTER TABLE delivery ADD COLUMN quarantine_published_at {ts};
CREATE INDEX delivery_quarantine ON delivery (tenant_id, quarantined_at)
    WHERE status = 'quarantined';
CREATE INDEX delivery_quarantine_unpublished ON delivery (quarantined_at)
    WHERE status = 'quarantined' AND quarantine_published_at IS NULL;
"""
