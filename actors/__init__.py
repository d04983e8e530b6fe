"""Hookline's background work on Dramatiq: the actors, their broker, middleware and processes.

One module per actor (`fan_out`, `deliver`, `verify`, `supervise`, `alert`),
all declared on a broker by `registry` and bound to the process's `Runtime`;
`broker` builds brokers and publishes; `middleware` is the delivery policy,
`lifecycle` the middleware that open and close a process's resources;
`pipeline` sends and records a worker's attempts; `messages` are the typed
records between processes. Each process kind has one composition root:
`worker`, `supervisor`, `scheduler.build`, and `api.embedded` for all in one.
"""
