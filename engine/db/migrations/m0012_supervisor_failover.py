"""Supervisor failover: outcome batches folded once, alerts sent once per channel.

Two or more supervisors may consume `hookline.supervise` and `hookline.alert`.
`supervised_message` holds the id of every outcome message already folded into
the breakers, inserted in the fold's own transaction: a message RabbitMQ hands
out again (its supervisor died between the commit and the ack) is skipped, not
counted twice. The scheduler prunes ids older than a day (`folded_at`).
`alert_send` is a channel's claim on an alert, taken and committed before the
channel is dialled and marked `sent_at` after: a second sender of the same
alert skips a channel another holds or has done.
"""

TITLE = "supervisor failover: folded outcome messages, alert sends claimed per channel"

DDL = """
CREATE TABLE supervised_message (
    message_id VARCHAR(64) PRIMARY KEY,
    folded_at {ts} NOT NULL
);
CREATE INDEX supervised_message_folded_at ON supervised_message (folded_at);
CREATE TABLE alert_send (
    alert_id VARCHAR(40) NOT NULL REFERENCES alert (id) ON DELETE CASCADE,
    channel VARCHAR(16) NOT NULL,
    claim VARCHAR(40) NOT NULL,
    claimed_at {ts} NOT NULL,
    sent_at {ts},
    PRIMARY KEY (alert_id, channel)
)
"""
