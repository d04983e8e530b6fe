"""Flow control: an endpoint's throttle and ordering, its flow state, waiting deliveries.

`endpoint.rate_limit_per_s` and `endpoint.max_in_flight` (null: no limit) and
`endpoint.ordering` (`unordered` or `fifo`) are the subscriber's settings.
`endpoint_flow` holds what the workers share about an endpoint's flow, one row
per endpoint that ever needed one: its token bucket (`tokens` at `tokens_at`),
the concurrency adaptive control has learnt (null: not limited by it) with the
reason and time of its last change and the streak of fast successes since,
the pause a `Retry-After` asked for, and `waiting`, set while some of its
deliveries wait as `throttled` (the scheduler's release pass reads only those
rows). A waiting delivery is found, in order, by `delivery_throttled`.
"""

TITLE = "flow control: throttle, adaptive concurrency, FIFO"

DDL = """
ALTER TABLE endpoint ADD COLUMN rate_limit_per_s INTEGER;
ALTER TABLE endpoint ADD COLUMN max_in_flight INTEGER;
ALTER TABLE endpoint ADD COLUMN ordering VARCHAR(16) NOT NULL DEFAULT 'unordered';
CREATE TABLE endpoint_flow (
    endpoint_id VARCHAR(40) PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_at {ts},
    concurrency INTEGER,
    concurrency_reason TEXT,
    concurrency_changed_at {ts},
    fast_streak INTEGER NOT NULL DEFAULT 0,
    paused_until {ts},
    pause_reason TEXT,
    waiting BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at {ts} NOT NULL
);
CREATE INDEX endpoint_flow_waiting ON endpoint_flow (endpoint_id) WHERE waiting;
CREATE INDEX delivery_throttled ON delivery (endpoint_id, event_created_at, event_id)
    WHERE status = 'throttled'
"""
