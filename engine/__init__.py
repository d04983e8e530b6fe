"""Hookline's domain, free of Falcon, Dramatiq and Prometheus.

Top level: `settings`, `errors` (the one error tree), `ids`, `logs`, and the pure
policies `retry` (what follows an attempt), `signing` (Standard Webhooks) and `ssrf`
(which addresses a delivery may reach), with `secretbox` for secrets at rest. Each
larger concept is a package: `events`, `deliveries`, `endpoints`, `breakers`,
`alerts`, `tenancy` and `db`.
"""

__version__ = "0.1.0"
