"""Hookline's background work: Dramatiq actors, the scheduler, and their broker."""
