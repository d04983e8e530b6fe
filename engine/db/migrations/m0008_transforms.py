"""Transformations: an endpoint's JMESPath expression, and the body each attempt sent.

`endpoint.transform` holds `{"jmespath": ...}` or null. `attempt.request_body`
holds the body an attempt sent when a transform shaped it; null stands for
the event's standard envelope, which is rebuilt from the stored event byte
for byte, so the common case costs no space.
"""

TITLE = "transforms: endpoint.transform, attempt.request_body"

# {json}: JSONB on PostgreSQL, TEXT on SQLite.
DDL = """
ALTER TABLE endpoint ADD COLUMN transform {json};
ALTER TABLE attempt ADD COLUMN request_body TEXT
"""
