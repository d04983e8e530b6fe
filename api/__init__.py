"""Hookline's REST API: a Falcon WSGI app built by `api.app.create_app`."""
