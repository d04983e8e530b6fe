"""The payload the schema scenario sends: 20 properties, and the schema that holds them."""

from __future__ import annotations

from typing import Any

EVENT_TYPE = "bench.schema"
PROPERTIES = 20
_KINDS: tuple[tuple[dict[str, Any], Any], ...] = (
    ({"type": "string", "minLength": 1, "maxLength": 64}, "abcdef"),
    ({"type": "integer", "minimum": 0}, 12345),
    ({"type": "number"}, 12.5),
    ({"type": "boolean"}, True),
    ({"enum": ["usd", "eur", "gbp"]}, "eur"),
    ({"type": "array", "items": {"type": "string"}, "maxItems": 8}, ["a", "b"]),
)


def schema() -> dict[str, Any]:
    """A schema of `PROPERTIES` required properties of mixed kinds, nothing else allowed."""
    properties: dict[str, Any] = {"n": {"type": "integer", "minimum": 0}, "pad": {"type": "string"}}
    for index in range(PROPERTIES - len(properties)):
        properties[f"f{index:02d}"] = _KINDS[index % len(_KINDS)][0]
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": False,
    }


def payload(n: int, pad: str) -> dict[str, Any]:
    """A payload `schema()` accepts: the same 20 properties, filled."""
    body: dict[str, Any] = {"n": n, "pad": pad}
    for index in range(PROPERTIES - len(body)):
        body[f"f{index:02d}"] = _KINDS[index % len(_KINDS)][1]
    return body
