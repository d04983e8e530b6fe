"""Hookline's domain: settings, models, signing, retry policy and the delivery client."""

__version__ = "0.1.0"
