"""Hookline's domain, free of Falcon, Dramatiq and Prometheus.

Top level: `settings`, `errors` (the one error tree), `ids`, `logs`, and the pure
policies `retry` (what follows an attempt), `signing` (Standard Webhooks) and `ssrf`
(which addresses a delivery may reach), with `secretbox` for secrets at rest. Each
larger concept is a package: `events`, `deliveries`, `endpoints`, `breakers`,
`alerts`, `tenancy` and `db`. `shortcuts` holds the performance shortcuts that lean
on peewee, psycopg2 or CPython internals, each with what it rests on.
"""

__version__ = "0.1.0"
