"""Replay lanes paced by slots: `replay_lane.next_slot_at` replaces the token bucket.

A lane gives each delivery it queues a time to be sent, spaced by its rate, as flow
control does for a rate-limited endpoint (migration 17), and the worker waits for it:
the bucket let what it released bunch on the way when a thread was starved. The
bucket's `tokens` and `tokens_at` are no longer read, and go.
"""

TITLE = "replay lanes paced by slots"

DDL = """
ALTER TABLE replay_lane ADD COLUMN next_slot_at {ts};
ALTER TABLE replay_lane DROP COLUMN tokens;
ALTER TABLE replay_lane DROP COLUMN tokens_at
"""
