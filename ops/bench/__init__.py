"""Hookline's benchmark: real processes on loopback, medians of repeated runs, JSON and a table."""
