"""Tenancy and access: tenants, their API keys, authenticated credentials, rate limits.

Owns who may do what: `tenants` creates and reads tenants, `keys` issues, lists and
revokes API keys (stored as digests, shown once), `credentials` says who is calling
and remembers authenticated keys briefly, and `ratelimit` counts requests per credential across
every API process. It never reads another concept's rows.
"""
