"""Events: accepted once per idempotency key, committed before they are acknowledged.

Owns the event record: `ingest` inserts events (one row per tenant and idempotency
key, concurrent requests committed together), announces them for fan-out after the
commit, and reads them back for their tenant. `catalog` owns the event types a
tenant declares (`payload_schema` checks and compiles their schemas) and
`catalog_cache` judges payloads against them at ingest. It never matches
endpoints: the fan-out in `engine.deliveries` does.
"""
