"""Bulk replay, backfill and pause: `replay`, `replay_lane`, and what deliveries carry.

A `replay` is one operator's request to send past deliveries again (or, for a
backfill, for the first time): its filters, its rate, its state and counts.
`replay_lane` is one endpoint's pacing for everything replayed to it: a token
bucket at the lane's rate, and `waiting` while some of its deliveries wait for
the pacer. Those wait as `scheduled` without a `next_attempt_at`, found in event
order by `delivery_paced`. A delivery records the replay that last took it
(`replay_id`), the state it was taken from (`replayed_from`, restored if the
replay is cancelled before it is sent), and when it was put back in play
(`restarted_at`, with `restart_attempts` made before): its retry schedule and
age limit count from there. Each attempt records its replay. An endpoint's
`paused_at` pauses it; its deliveries wait as `paused` (`delivery_paused`).
"""

TITLE = "bulk replay, backfill and pause"

DDL = """
CREATE TABLE replay (
    id VARCHAR(40) PRIMARY KEY,
    tenant_id VARCHAR(40) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    endpoint_id VARCHAR(40),
    event_types {json},
    statuses {json},
    since {ts} NOT NULL,
    until {ts},
    rate_per_s INTEGER NOT NULL,
    status VARCHAR(16) NOT NULL,
    matched INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    created_at {ts} NOT NULL,
    finished_at {ts},
    updated_at {ts} NOT NULL
);
CREATE INDEX replay_tenant_id ON replay (tenant_id, id);
CREATE INDEX replay_running ON replay (id) WHERE status = 'running';
CREATE TABLE replay_lane (
    endpoint_id VARCHAR(40) PRIMARY KEY,
    rate_per_s DOUBLE PRECISION NOT NULL,
    tokens DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_at {ts},
    waiting BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at {ts} NOT NULL
);
CREATE INDEX replay_lane_waiting ON replay_lane (endpoint_id) WHERE waiting;
ALTER TABLE endpoint ADD COLUMN paused_at {ts};
ALTER TABLE delivery ADD COLUMN replay_id VARCHAR(40);
ALTER TABLE delivery ADD COLUMN replayed_from VARCHAR(16);
ALTER TABLE delivery ADD COLUMN restarted_at {ts};
ALTER TABLE delivery ADD COLUMN restart_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempt ADD COLUMN replay_id VARCHAR(40);
CREATE INDEX delivery_replay ON delivery (replay_id, status) WHERE replay_id IS NOT NULL;
CREATE INDEX delivery_paced ON delivery (endpoint_id, event_created_at, event_id)
    WHERE status = 'scheduled' AND next_attempt_at IS NULL;
CREATE INDEX delivery_paused ON delivery (endpoint_id, event_created_at, event_id)
    WHERE status = 'paused';
CREATE INDEX delivery_event_time ON delivery (tenant_id, event_created_at)
"""
