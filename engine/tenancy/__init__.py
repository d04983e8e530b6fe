"""Tenancy and access: tenants, their API keys, authenticated credentials, rate limits.

Owns who may do what: `tenants` creates and reads tenants, `keys` issues, lists and
revokes API keys (stored as digests, shown once), `credentials` says who is calling
and remembers authenticated keys briefly, `ratelimit` is the arithmetic of limits shared by
every API process, and `limiter` spends them from leases held in each process, with no
database work per request. It never reads another concept's rows.
"""
