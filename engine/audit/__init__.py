"""The audit log: every change made through the API, who made it, and what changed.

Owns the `audit_log` table: `log` writes an entry (the API's `api.audit` middleware,
after the change committed), reads a tenant's entries (or, for the admin, everyone's)
newest first with filters, and purges entries older than a retention cutoff in batches.
What an entry holds is decided before it gets here: the fields of the request body,
secrets replaced by "changed" (`api.audit`). It never reads another concept's rows.
"""
