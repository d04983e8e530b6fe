"""Events awaiting fan-out move to a narrow table of their own.

The fan-out's gate was an UPDATE of `event.fanned_out_at`: it rewrote the
whole event row, payload included, and, the column being in the predicate of
the partial index `event_unfanned`, wrote a new entry in each of the table's
indexes too; its dead rows then had to be vacuumed away. It cost PostgreSQL
more than inserting the event (ops/bench/NOTES.md#fan-out-pending-table). A
new event now also gets a row in `event_fan_out` (a trigger, so that every
way of inserting events, COPY included, gets it in the same statement), and
the fan-out's gate deletes that row. Every new event is pending, whatever
inserted it: one stored without a fan-out lease is due at once.
"""

TITLE = "fan-out pending: a narrow table, filled by a trigger"

DDL = """
CREATE TABLE event_fan_out (
    event_id VARCHAR(40) PRIMARY KEY,
    lease_until {ts} NOT NULL
);
CREATE INDEX event_fan_out_lease ON event_fan_out (lease_until);
INSERT INTO event_fan_out (event_id, lease_until)
    SELECT id, COALESCE(fan_out_lease_until, created_at) FROM event WHERE fanned_out_at IS NULL;
DROP INDEX event_unfanned;
ALTER TABLE event DROP COLUMN fanned_out_at
"""

# Statements run whole, after the DDL, on one database kind: their bodies hold semicolons.
POSTGRES = [
    """CREATE FUNCTION event_fan_out_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_fan_out (event_id, lease_until)
        SELECT id, COALESCE(fan_out_lease_until, created_at) FROM new_events;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER event_fan_out_pending AFTER INSERT ON event
REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT
EXECUTE FUNCTION event_fan_out_pending()""",
]
SQLITE = [
    """CREATE TRIGGER event_fan_out_pending AFTER INSERT ON event
FOR EACH ROW
BEGIN
    INSERT INTO event_fan_out (event_id, lease_until)
        VALUES (NEW.id, COALESCE(NEW.fan_out_lease_until, NEW.created_at));
END""",
]
