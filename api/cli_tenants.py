"""`hookline tenants list|show|suspend|resume|delete`: the tenant lifecycle from the shell.

Each works on the database directly, as `hookline tenants create` does, and prints JSON
(the shape `GET /v1/tenants/{id}` answers). The API's credential caches hear of a change
made here within `HOOKLINE_CREDENTIAL_CACHE_TTL_S` (one second by default), not at once
as they do of one made through the API; and a change made here is not in the audit log,
which records the API's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api import views
from engine import secretbox
from engine.db.connect import bind
from engine.db.migrations import migrate
from engine.db.models import TENANT_STATES
from engine.errors import ConflictError, NotFoundError
from engine.lifecycle import tenants as lifecycle
from engine.settings import Settings
from engine.tenancy.credentials import CredentialGeneration

_VERBS = {
    "suspend": (lifecycle.suspend, "refuse a tenant's requests; its deliveries wait"),
    "resume": (lifecycle.resume, "accept a suspended tenant's requests; its deliveries go"),
    "delete": (lifecycle.delete, "refuse a tenant and erase all its data in the background"),
}


def add_commands(commands: Any) -> None:
    """Add the lifecycle subcommands to `hookline tenants`."""
    listing = commands.add_parser("list", help="list tenants, newest first, as JSON lines")
    listing.add_argument("--status", choices=TENANT_STATES, default=None)
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="show a tenant, and its erasure's progress")
    show.add_argument("tenant_id")
    show.set_defaults(handler=_show)
    for verb, (_, summary) in _VERBS.items():
        command = commands.add_parser(verb, help=summary)
        command.add_argument("tenant_id")
        command.set_defaults(handler=_change, verb=verb)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    box = secretbox.from_settings(settings)
    database = bind(settings)
    migrate(database)
    with database.connection_context():
        cursor = None
        while True:
            page = lifecycle.list_tenants(limit=200, cursor=cursor, status=args.status)
            for row in page.items:
                print(json.dumps(views.tenant_detail(row, box), ensure_ascii=False))
            if (cursor := page.next_cursor) is None:
                return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    return _run(settings, lambda: lifecycle.get_tenant(args.tenant_id))


def _change(settings: Settings, args: argparse.Namespace) -> int:
    verb = _VERBS[args.verb][0]
    return _run(settings, lambda: verb(args.tenant_id, credentials=CredentialGeneration()))


def _run(settings: Settings, action: Any) -> int:
    box = secretbox.from_settings(settings)
    database = bind(settings)
    migrate(database)
    with database.connection_context():
        try:
            tenant = action()
        except (NotFoundError, ConflictError) as exc:
            print(f"hookline: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(views.tenant_detail(tenant, box), ensure_ascii=False))
    return 0
