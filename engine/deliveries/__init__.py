"""Deliveries: one event to one endpoint, from fan-out to its last attempt.

Owns the delivery's life: `states` is its state machine, through which every status
change goes, `fanout` turns an event into deliveries, `record` claims them and
records each attempt with what follows it, `client` makes the HTTP attempt
(returning an outcome value, never raising on an HTTP failure), `hostgate` caps
attempts in flight per host, `schedule` finds what is due or lost, `quarantine`
lists, replays and purges what will not be tried again, and `log` is the tenant's
read side. It never decides when to retry (that is `engine.retry`) nor how an
endpoint's breaker moves (that is `engine.breakers`).
"""
