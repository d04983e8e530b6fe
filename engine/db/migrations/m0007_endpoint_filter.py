"""An endpoint's payload filter.

`payload_filter` (`filter` in the API) holds the JSON filter its events' content must match
(`engine.endpoints.payload_filter`); null, the default, lets every event of its
subscribed types through, as before.
"""

TITLE = "endpoint payload filter"

DDL = """
ALTER TABLE endpoint ADD COLUMN payload_filter {json};
"""
