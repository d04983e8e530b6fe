"""Rate limits as slots: `endpoint_flow.next_slot_at` replaces the token bucket.

A rate-limited endpoint's releases give each delivery a time to be sent, spaced by
the rate, carried as its `next_attempt_at` while `queued`; `next_slot_at` is the
endpoint's next free one (`engine.deliveries.slots`). The bucket's `tokens` and
`tokens_at` are no longer read, and go.
"""

TITLE = "rate limits as slots"

DDL = """
ALTER TABLE endpoint_flow ADD COLUMN next_slot_at {ts};
ALTER TABLE endpoint_flow DROP COLUMN tokens;
ALTER TABLE endpoint_flow DROP COLUMN tokens_at
"""
