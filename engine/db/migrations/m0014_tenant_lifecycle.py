"""Tenant lifecycle and the audit log.

A tenant has a `status` (`active`, `suspended`, `deleting`: `engine.tenancy.states`)
and, while it is being erased, the erasure's progress (`deletion`, JSON). The partial
index lets the scheduler's lifecycle pass find the few tenants that are not active
without reading the others.

`endpoint_flow.held` keeps a suspended (or deleting) tenant's endpoints' deliveries
waiting as `throttled` in PostgreSQL (`engine.deliveries.flow`): set on suspension,
cleared on resume.

`audit_log` records every change made through the API (`engine.audit`): who, when,
the route, the target and the changed fields, secrets only as "changed". Rows with a
null `tenant_id` are the admin's record of tenants created or deleted.
"""

TITLE = "tenant lifecycle (suspend, delete) and the audit log"

DDL = """
ALTER TABLE tenant ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active';
ALTER TABLE tenant ADD COLUMN status_changed_at {ts};
ALTER TABLE tenant ADD COLUMN deletion {json};
CREATE INDEX tenant_not_active ON tenant (id) WHERE status <> 'active';
ALTER TABLE endpoint_flow ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE audit_log (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40),
    actor_kind VARCHAR(16) NOT NULL,
    actor_id VARCHAR(64) NOT NULL,
    actor_subject VARCHAR(255),
    action VARCHAR(255) NOT NULL,
    target_id VARCHAR(255),
    status_code INTEGER NOT NULL,
    changes {json},
    request_id VARCHAR(128),
    created_at {ts} NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_created_at ON audit_log (created_at)
"""

# A key that held every scope there was (a tenant's first key, say) is given `audit:read`,
# so it still holds every scope, as migration 9 did for the event-type scopes.
_EVERY_SCOPE_BEFORE = (
    "events:write",
    "endpoints:read",
    "endpoints:write",
    "deliveries:read",
    "deliveries:write",
    "keys:manage",
    "event_types:read",
    "event_types:write",
)
_QUOTED = ", ".join(f"'{scope}'" for scope in _EVERY_SCOPE_BEFORE)
_LISTED = ", ".join(f'"{scope}"' for scope in _EVERY_SCOPE_BEFORE)

POSTGRES = [
    f"""UPDATE api_key SET scopes = scopes || '["audit:read"]'::jsonb
WHERE scopes @> '[{_LISTED}]'::jsonb AND NOT scopes ? 'audit:read'""",
]
SQLITE = [
    f"""UPDATE api_key SET scopes = json_insert(scopes, '$[#]', 'audit:read')
WHERE (SELECT COUNT(DISTINCT value) FROM json_each(api_key.scopes) WHERE value IN ({_QUOTED})) = 8
AND NOT EXISTS (SELECT 1 FROM json_each(api_key.scopes) WHERE value = 'audit:read')""",
]
