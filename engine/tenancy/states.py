"""The tenant's state machine: its states, where it starts, and every allowed move.

    active      its credentials are accepted and its deliveries flow
    suspended   its requests are refused (403 `tenant-suspended`); its deliveries wait,
                in PostgreSQL, until it is resumed
    deleting    its requests are refused (403 `tenant-deleting`); the scheduler erases
                its rows in batches, then the tenant row itself (`engine.lifecycle.erase`)

A tenant is created `active`. `TRANSITIONS` is the whole truth, each move with who
makes it; every status change is a conditional UPDATE through `move`. What a move
does beyond the status (holding the endpoints' deliveries, emptying the credential
caches) is `engine.lifecycle.tenants`'.
"""

from __future__ import annotations

from engine.db.machine import StateMachine
from engine.db.models import TENANT_ACTIVE as ACTIVE
from engine.db.models import TENANT_DELETING as DELETING
from engine.db.models import TENANT_STATES as STATES
from engine.db.models import TENANT_SUSPENDED as SUSPENDED
from engine.db.models import Tenant

__all__ = ["ACTIVE", "DELETING", "INITIAL", "MACHINE", "STATES", "SUSPENDED", "TRANSITIONS", "move"]

INITIAL = (ACTIVE,)  # tenants.create_tenant

TRANSITIONS: dict[str, dict[str, str]] = {
    ACTIVE: {
        SUSPENDED: "lifecycle.tenants.suspend: the admin's POST /v1/tenants/{id}/suspend",
        DELETING: "lifecycle.tenants.delete: the admin's DELETE /v1/tenants/{id}",
    },
    SUSPENDED: {
        ACTIVE: "lifecycle.tenants.resume: the admin's POST /v1/tenants/{id}/resume",
        DELETING: "lifecycle.tenants.delete: the admin's DELETE /v1/tenants/{id}",
    },
    DELETING: {},  # the end: the erasure removes the row
}

MACHINE = StateMachine("tenant", Tenant.status, INITIAL, TRANSITIONS)
move = MACHINE.move
