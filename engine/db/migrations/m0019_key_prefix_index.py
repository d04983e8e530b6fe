"""An index on `api_key.prefix`, for the API's negative cache of unknown key prefixes.

A wrong key costs one more read, whether any live key has its prefix
(`engine.tenancy.tenants.authenticate_key`); this index makes that one probe.
"""

TITLE = "api key prefix index"

DDL = """
CREATE INDEX api_key_prefix ON api_key (prefix) WHERE revoked_at IS NULL
"""
