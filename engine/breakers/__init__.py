"""Circuit breakers: how an endpoint's failures open, probe and close its breaker.

Owns endpoint health: `state` is the pure breaker (closed, open, half-open) with the
clock passed in, `store` keeps its row and sliding window in the database (`folds`:
each outcome message folded once, however many supervisors see it), `tick`
is what time alone does to breakers (run by the active scheduler), and `parking`
holds deliveries back while a breaker is open or an endpoint is disabled, and lets
them go again, paced. It never sends HTTP and never formats an alert: it records
that one is owed in `engine.alerts.outbox`.
"""
