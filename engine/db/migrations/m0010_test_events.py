"""Test events: `POST /v1/endpoints/{id}/test` sends one event to one endpoint.

A test event and its one delivery are marked `test`, so the log can show them
as such, and the breaker and the metrics of real traffic leave them out. A
test event is never fanned out (its delivery is made with it, for the one
endpoint under test): the trigger of migration 6 gives it no `event_fan_out`
row.
"""

TITLE = "test events: marked, and never fanned out"

DDL = """
ALTER TABLE event ADD COLUMN test BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE delivery ADD COLUMN test BOOLEAN NOT NULL DEFAULT FALSE
"""

# Statements run whole, after the DDL, on one database kind: their bodies hold semicolons.
POSTGRES = [
    """CREATE OR REPLACE FUNCTION event_fan_out_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_fan_out (event_id, lease_until)
        SELECT id, COALESCE(fan_out_lease_until, created_at) FROM new_events WHERE NOT test;
    RETURN NULL;
END $$""",
]
SQLITE = [
    "DROP TRIGGER event_fan_out_pending",
    """CREATE TRIGGER event_fan_out_pending AFTER INSERT ON event
FOR EACH ROW WHEN NOT NEW.test
BEGIN
    INSERT INTO event_fan_out (event_id, lease_until)
        VALUES (NEW.id, COALESCE(NEW.fan_out_lease_until, NEW.created_at));
END""",
]
