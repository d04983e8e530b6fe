"""Replays: past deliveries sent again, history sent to an endpoint, and pause.

A replay (`replays`, its state machine in `states`) puts finished deliveries back in
play; a backfill (`backfill`) creates those an endpoint never received; a resume
(`pause`) hands a paused endpoint's deliveries back. All three leave them `scheduled`
without a `next_attempt_at`, waiting in PostgreSQL for their endpoint's replay lane,
which the scheduler paces (`pacing`) in event order.
"""
