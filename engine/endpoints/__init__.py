"""Endpoints: where a tenant's events go, which ones, and with what secret.

Owns the endpoint record: `states` is its state machine (active, disabled,
unverified) and the one way to disable or enable it, `crud` creates, reads, updates
and deletes endpoints, `filters` matches event types against an endpoint's
subscriptions, `payload_filter` (with `payload_operators`) checks and compiles the
filter an event's content must match, `secrets` issues, rotates and reveals signing
secrets, and `verification` runs the signed challenge an endpoint answers before it
receives events. It never sends deliveries and never moves a breaker.
"""
