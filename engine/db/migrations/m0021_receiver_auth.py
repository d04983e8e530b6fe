"""An endpoint's credentials to its receiver: `auth` (basic, bearer, OAuth2) and `tls`."""

TITLE = "endpoint receiver auth and client certificates"

# Sealed JSON (engine.endpoints.receiver_auth); NULL when neither is set.
DDL = """
ALTER TABLE endpoint ADD COLUMN receiver_auth {json}
"""
