"""A tenant's lifecycle: suspended, resumed, deleted; the erasure that follows a deletion.

Owns what a tenant's state means for the rest of the engine: `tenants` moves a tenant
through its state machine (`engine.tenancy.states`) and holds or lets go its endpoints'
deliveries (`engine.deliveries.flow.set_held`), so a suspended tenant's work waits in
PostgreSQL; `erase` removes every row of a deleted tenant in batches, run by the
scheduler's leader (`actors.scheduler`) and resumed from where it stood after a crash.
It sits above the delivery core because it reaches into every concept's rows.
"""
