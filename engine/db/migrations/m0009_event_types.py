"""The event-type catalog, the schema version an event passed, and strict mode.

`event_type` holds each tenant's declared event types (unique by name per
tenant), with an optional JSON Schema kept as JSON text and a `version` raised
on every change of that schema. `tenant.event_types_generation` is raised in
the same transaction as every change of a tenant's catalog: the API's
per-process caches poll it (`engine.events.catalog_cache`). A tenant with
`strict_event_types` accepts only events of registered, unarchived types.

A key that held every scope there was (a tenant's first key, say) is given
the two new ones, `event_types:read` and `event_types:write`, so that it
still holds every scope; a narrower key is left as it was.
"""

TITLE = "event-type catalog: schemas, versions, strict mode"

# {json}: JSONB on PostgreSQL, TEXT on SQLite; {ts}: a UTC timestamp.
DDL = """
CREATE TABLE event_type (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    name VARCHAR(128) NOT NULL,
    description TEXT,
    schema TEXT,
    examples {json} NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL
);
CREATE UNIQUE INDEX event_type_name ON event_type (tenant_id, name);
ALTER TABLE event ADD COLUMN schema_version INTEGER;
ALTER TABLE tenant ADD COLUMN strict_event_types BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tenant ADD COLUMN event_types_generation BIGINT NOT NULL DEFAULT 0
"""

_EVERY_SCOPE_BEFORE = (
    "events:write",
    "endpoints:read",
    "endpoints:write",
    "deliveries:read",
    "deliveries:write",
    "keys:manage",
)
_QUOTED = ", ".join(f"'{scope}'" for scope in _EVERY_SCOPE_BEFORE)
_LISTED = ", ".join(f'"{scope}"' for scope in _EVERY_SCOPE_BEFORE)

# Statements run whole, after the DDL, on one database kind.
POSTGRES = [
    f"""UPDATE api_key SET scopes = scopes || '["event_types:read", "event_types:write"]'::jsonb
WHERE scopes @> '[{_LISTED}]'::jsonb AND NOT scopes ? 'event_types:read'""",
]
SQLITE = [
    f"""UPDATE api_key
SET scopes = json_insert(scopes, '$[#]', 'event_types:read', '$[#]', 'event_types:write')
WHERE (SELECT COUNT(DISTINCT value) FROM json_each(api_key.scopes) WHERE value IN ({_QUOTED})) = 6
AND NOT EXISTS (SELECT 1 FROM json_each(api_key.scopes) WHERE value = 'event_types:read')""",
]
