"""The commands of `hookline` over the API (`api.cli_remote`), as data: each noun's verbs,
the HTTP method and path each makes, where each option goes, and a table's columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """A command-line option or argument, and where its value goes: the path (`path`),
    the query string (`query`) or the JSON body (`body`, as `json` when it is JSON text)."""

    flags: tuple[str, ...]
    to: str
    name: str
    help: str
    kind: str = "text"  # text, int, json, list
    required: bool = False


@dataclass(frozen=True)
class Command:
    verb: str
    method: str
    path: str
    help: str
    example: str
    options: tuple[Option, ...] = ()
    columns: tuple[str, ...] = ()  # a list's table; empty: the answer is one item
    body: dict[str, Any] = field(default_factory=dict)  # fixed fields of the body


def arg(name: str, help: str, to: str = "path") -> Option:
    return Option((name,), to, name, help, required=True)


def opt(
    flag: str, to: str, name: str, help: str, kind: str = "text", required: bool = False
) -> Option:
    return Option((flag,), to, name, help, kind, required)


PAGE = (
    opt("--limit", "query", "limit", "rows per page (1-200)", "int"),
    opt("--cursor", "query", "cursor", "the next_cursor of the page before"),
)
DATA = opt(
    "--data", "body", "", "more fields, as a JSON object (the API reference lists them)", "json"
)
ENDPOINT_ROW = ("id", "url", "status", "event_types", "paused")
DELIVERY_ROW = (
    "id",
    "event_type",
    "endpoint_id",
    "status",
    "attempts",
    "last_status_code",
    "next_attempt_at",
)

NOUNS: dict[str, tuple[str, tuple[Command, ...]]] = {
    "endpoints": (
        "where the tenant's events go",
        (
            Command(
                "list",
                "GET",
                "/v1/endpoints",
                "list endpoints, newest first",
                "hookline endpoints list",
                PAGE,
                ENDPOINT_ROW,
            ),
            Command(
                "get",
                "GET",
                "/v1/endpoints/{endpoint_id}",
                "show one endpoint",
                "hookline endpoints get ep_01...",
                (arg("endpoint_id", "the endpoint"),),
            ),
            Command(
                "create",
                "POST",
                "/v1/endpoints",
                "register an endpoint; prints its signing secret once",
                "hookline endpoints create --url https://example.com/h --event-type 'invoice.*'",
                (
                    opt("--url", "body", "url", "where to POST", required=True),
                    Option(
                        ("--event-type",),
                        "body",
                        "event_types",
                        "an event type or prefix.* (repeat it)",
                        "list",
                    ),
                    opt("--description", "body", "description", "a label"),
                    DATA,
                ),
            ),
            Command(
                "update",
                "PATCH",
                "/v1/endpoints/{endpoint_id}",
                "change some fields",
                "hookline endpoints update ep_01... --data '{\"rate_limit_per_s\": 20}'",
                (
                    arg("endpoint_id", "the endpoint"),
                    opt("--url", "body", "url", "a new URL (verified again if it was)"),
                    opt("--description", "body", "description", "a label"),
                    DATA,
                ),
            ),
            Command(
                "delete",
                "DELETE",
                "/v1/endpoints/{endpoint_id}",
                "retire an endpoint: its open deliveries are cancelled",
                "hookline endpoints delete ep_01...",
                (arg("endpoint_id", "the endpoint"),),
            ),
            Command(
                "pause",
                "POST",
                "/v1/endpoints/{endpoint_id}/pause",
                "hold its deliveries until resumed",
                "hookline endpoints pause ep_01...",
                (arg("endpoint_id", "the endpoint"),),
            ),
            Command(
                "resume",
                "POST",
                "/v1/endpoints/{endpoint_id}/resume",
                "send what waited, in event order, paced",
                "hookline endpoints resume ep_01...",
                (arg("endpoint_id", "the endpoint"),),
            ),
            Command(
                "enable",
                "POST",
                "/v1/endpoints/{endpoint_id}/enable",
                "enable a disabled endpoint (and replay what it parked)",
                "hookline endpoints enable ep_01...",
                (arg("endpoint_id", "the endpoint"),),
                body={"replay": True},
            ),
            Command(
                "health",
                "GET",
                "/v1/endpoints/{endpoint_id}/health",
                "its breaker, failure window and flow control",
                "hookline endpoints health ep_01...",
                (arg("endpoint_id", "the endpoint"),),
            ),
            Command(
                "test",
                "POST",
                "/v1/endpoints/{endpoint_id}/test",
                "send a test event through the real pipeline",
                'hookline endpoints test ep_01... --data \'{"event_type": "invoice.paid"}\'',
                (arg("endpoint_id", "the endpoint"), DATA),
            ),
        ),
    ),
    "events": (
        "what producers sent",
        (
            Command(
                "list",
                "GET",
                "/v1/events",
                "list events, newest first",
                "hookline events list --event-type invoice.paid",
                (*PAGE, opt("--event-type", "query", "event_type", "only this type")),
                ("id", "event_type", "created_at"),
            ),
            Command(
                "get",
                "GET",
                "/v1/events/{event_id}",
                "show one event and its payload",
                "hookline events get evt_01...",
                (arg("event_id", "the event"),),
            ),
        ),
    ),
    "deliveries": (
        "one event's way to one endpoint",
        (
            Command(
                "list",
                "GET",
                "/v1/deliveries",
                "list deliveries, newest first",
                "hookline deliveries list --status quarantined",
                (
                    *PAGE,
                    opt("--status", "query", "status", "only this status"),
                    opt("--endpoint-id", "query", "endpoint_id", "only this endpoint's"),
                    opt("--event-id", "query", "event_id", "only this event's"),
                ),
                DELIVERY_ROW,
            ),
            Command(
                "get",
                "GET",
                "/v1/deliveries/{delivery_id}",
                "show one delivery",
                "hookline deliveries get dlv_01...",
                (arg("delivery_id", "the delivery"),),
            ),
            Command(
                "attempts",
                "GET",
                "/v1/deliveries/{delivery_id}/attempts",
                "every attempt: what was sent and answered",
                "hookline deliveries attempts dlv_01...",
                (arg("delivery_id", "the delivery"), *PAGE),
                ("number", "started_at", "status_code", "error_class", "duration_ms"),
            ),
            Command(
                "retry",
                "POST",
                "/v1/deliveries/{delivery_id}/retry",
                "send a quarantined delivery again",
                "hookline deliveries retry dlv_01...",
                (arg("delivery_id", "the delivery"),),
            ),
        ),
    ),
    "quarantine": (
        "deliveries that never succeeded",
        (
            Command(
                "list",
                "GET",
                "/v1/quarantine",
                "list quarantined deliveries, newest first",
                "hookline quarantine list --endpoint-id ep_01...",
                (
                    *PAGE,
                    opt("--endpoint-id", "query", "endpoint_id", "only this endpoint's"),
                    opt("--since", "query", "since", "RFC 3339"),
                ),
                DELIVERY_ROW,
            ),
            Command(
                "recover",
                "POST",
                "/v1/endpoints/{endpoint_id}/recover",
                "send an endpoint's quarantined deliveries again, paced",
                "hookline quarantine recover ep_01... --since 2026-12-01T00:00:00Z",
                (
                    arg("endpoint_id", "the endpoint"),
                    opt("--since", "body", "since", "RFC 3339", required=True),
                    opt("--until", "body", "until", "RFC 3339"),
                ),
            ),
        ),
    ),
    "replays": (
        "send finished deliveries again, paced (running, cancel: every tenant's, by database)",
        (
            Command(
                "list",
                "GET",
                "/v1/replays",
                "list the tenant's replays",
                "hookline replays list",
                PAGE,
                ("id", "kind", "status", "matched", "queued", "succeeded", "failed"),
            ),
            Command(
                "get",
                "GET",
                "/v1/replays/{replay_id}",
                "show a replay's progress",
                "hookline replays get rpl_01...",
                (arg("replay_id", "the replay"),),
            ),
            Command(
                "create",
                "POST",
                "/v1/replays",
                "replay what matches, paced",
                "hookline replays create --since 2026-12-01T00:00:00Z --endpoint-id ep_01...",
                (
                    opt("--since", "body", "since", "RFC 3339", required=True),
                    opt("--until", "body", "until", "RFC 3339"),
                    opt("--endpoint-id", "body", "endpoint_id", "one endpoint's only"),
                    opt("--rate", "body", "rate_per_s", "deliveries a second", "int"),
                    DATA,
                ),
            ),
        ),
    ),
    "keys": (
        "the tenant's API keys",
        (
            Command(
                "list",
                "GET",
                "/v1/keys",
                "list keys (never the keys themselves)",
                "hookline keys list",
                PAGE,
                ("id", "name", "prefix", "scopes", "created_at"),
            ),
            Command(
                "create",
                "POST",
                "/v1/keys",
                "issue a key; prints it once",
                "hookline keys create --scope events:write --name ci",
                (
                    Option(("--scope",), "body", "scopes", "a scope (repeat it)", "list", True),
                    opt("--name", "body", "name", "a label"),
                ),
            ),
            Command(
                "revoke",
                "DELETE",
                "/v1/keys/{key_id}",
                "revoke a key",
                "hookline keys revoke key_01...",
                (arg("key_id", "the key"),),
            ),
        ),
    ),
    "event-types": (
        "the tenant's declared event types and their schemas",
        (
            Command(
                "list",
                "GET",
                "/v1/event-types",
                "list event types",
                "hookline event-types list",
                PAGE,
                ("name", "version", "archived", "description"),
            ),
            Command(
                "get",
                "GET",
                "/v1/event-types/{name}",
                "show one, with its schema",
                "hookline event-types get invoice.paid",
                (arg("name", "the type"),),
            ),
            Command(
                "create",
                "POST",
                "/v1/event-types",
                "declare an event type",
                'hookline event-types create invoice.paid --schema \'{"type": "object"}\'',
                (
                    arg("name", "the type", "body"),
                    opt("--description", "body", "description", "what it means"),
                    opt("--schema", "body", "schema", "a JSON Schema (2020-12)", "json_field"),
                    DATA,
                ),
            ),
            Command(
                "update",
                "PATCH",
                "/v1/event-types/{name}",
                "change its description or schema",
                "hookline event-types update invoice.paid --description 'An invoice was paid'",
                (
                    arg("name", "the type"),
                    opt("--description", "body", "description", "what it means"),
                    opt("--schema", "body", "schema", "a JSON Schema (2020-12)", "json_field"),
                    DATA,
                ),
            ),
            Command(
                "delete",
                "DELETE",
                "/v1/event-types/{name}",
                "archive it (never erased)",
                "hookline event-types delete invoice.paid",
                (arg("name", "the type"),),
            ),
        ),
    ),
    "oauth-clients": (
        "machine clients of the token endpoint (/oauth/token)",
        (
            Command(
                "list",
                "GET",
                "/v1/oauth-clients",
                "list clients",
                "hookline oauth-clients list",
                PAGE,
                ("client_id", "name", "scopes", "created_at"),
            ),
            Command(
                "create",
                "POST",
                "/v1/oauth-clients",
                "register a client; prints its secret once",
                "hookline oauth-clients create --name etl --scope events:write",
                (
                    opt("--name", "body", "name", "a label", required=True),
                    Option(("--scope",), "body", "scopes", "a scope (repeat it)", "list", True),
                ),
            ),
            Command(
                "delete",
                "DELETE",
                "/v1/oauth-clients/{client_id}",
                "delete a client: its tokens die with it",
                "hookline oauth-clients delete oac_01...",
                (arg("client_id", "the client"),),
            ),
        ),
    ),
}

SEND = Command(
    "send",
    "POST",
    "/v1/events",
    "publish one event, as a producer would (hookline's `stripe trigger`)",
    'hookline send invoice.paid --data \'{"invoice": "in_42", "amount": 4200}\'',
    (
        arg("event_type", "the event's type", "body"),
        opt("--data", "body", "payload", "the payload, a JSON object (default {})", "json_field"),
        opt("--idempotency-key", "header", "Idempotency-Key", "sent once, whatever the retries"),
    ),
)
