"""Hookline's REST API: a Falcon ASGI app built by `api.app.create_app`."""
