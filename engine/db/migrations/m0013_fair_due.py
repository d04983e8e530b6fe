"""Due retries picked tenant by tenant: `delivery_due_tenant`.

The scheduler's `take_due` takes due deliveries round-robin over the tenants
that have some (`engine/deliveries/schedule.py`), so that one tenant's large
backlog cannot hold every other tenant's retries back. It walks this index:
the tenants with scheduled deliveries, one index probe each, then each one's
earliest due rows. Only `scheduled` rows are in it, so the hot path (pending,
queued, delivering, succeeded) never maintains it.
"""

TITLE = "due deliveries by tenant, for the scheduler's round-robin"

DDL = """
CREATE INDEX delivery_due_tenant ON delivery (tenant_id, next_attempt_at)
    WHERE status = 'scheduled'
"""
