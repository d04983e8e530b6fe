"""The database: tables, connection and pool, group commits, pagination and migrations.

Owns how Hookline reaches PostgreSQL or SQLite: `models` defines every table behind
one `DatabaseProxy`, `connect` opens and binds a database from the settings, `batching`
commits what several threads submit together, `pages` turns keyset cursors into
queries, `machine` checks a status change against a transition table before its
conditional UPDATE, and `migrations` brings a schema up to date. It never decides what a row
means: the concept packages (deliveries, endpoints, breakers...) do.
"""
