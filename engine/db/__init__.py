"""The database: tables, connection and pool, group commits, pagination and migrations.

Owns how Hookline reaches PostgreSQL or SQLite: `models` defines every table behind
one `DatabaseProxy`, `connect` opens and binds a database from the settings (and is
the boundary where a database out of reach becomes `UnavailableError`), `batching`
commits what several threads submit together, `pages` turns keyset cursors into
queries, `machine` checks a status change against a transition table before its
conditional UPDATE, and `migrations` brings a schema up to date. It never decides what a row
means: the concept packages (deliveries, endpoints, breakers...) do.

`models.db` is the one deliberate process-wide binding in Hookline. peewee binds a
model class to a database, and every query the concept packages build goes through
that binding; DESIGN.md has the models behind a `DatabaseProxy` so that one process
chooses its database once, at its composition root, with `connect.bind(settings)`,
and nothing is connected at import. Everything else is handed in; this proxy is set
only by `bind` (tests call it too, or `db.initialize`), never patched by name.
"""
