"""How deep a JSON body nests, judged without recursion.

Every field of a body may nest `MAX_DEPTH` levels of objects and arrays (`{}` is one), an
event's payload `max_payload_depth`. A deeper one parses, and would be stored, but every
answer that holds it could not be written (Python's recursion limit). A parsed body is
judged by `too_deep`; one too deep for Python to parse at all, by `deep_path` over its
bytes, so that even then the answer names the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 64

# What moves the scanner: a string (whole, escapes and all), or one structural character.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],]', re.DOTALL)


def too_deep(document: Any, text: str, max_depth: int) -> dict[str, str] | None:
    """The failure (`{field, message}`) of the first field of `document` that nests deeper
    than `max_depth` levels, or None; `text` is the document as JSON.

    Counting the brackets in `text` settles nearly every body at C speed: a document with
    no more of them than `max_depth` cannot nest deeper. Only the others are walked.
    """
    if text.count("{") + text.count("[") <= max_depth:
        return None
    fields = document.items() if isinstance(document, dict) else [("(body)", document)]
    for name, value in fields:
        if _deeper_than(value, max_depth):
            return {
                "field": str(name),
                "message": f"nests deeper than {max_depth} levels of objects and arrays",
            }
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels (`{}` and `[]` are one), walked without
    recursion and given up as soon as it does."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def deep_path(raw: bytes, limit: int) -> list[str] | None:
    """The keys and indexes down to the first object or array nested more than `limit`
    levels deep in `raw`, or None; read token by token, never recursing.

    Only for bodies that Python could not parse for their depth: it costs a Python step
    per string and bracket.
    """
    # Each open container: [is_object, its current key or index, a key comes next].
    stack: list[list[Any]] = []
    for match in _TOKEN.finditer(raw):
        token = match.group()
        top = stack[-1] if stack else None
        if token[:1] == b'"':
            if top is not None and top[0] and top[2]:
                top[1], top[2] = _key(token), False
        elif token in (b"{", b"["):
            stack.append([token == b"{", None if token == b"{" else 0, token == b"{"])
            if len(stack) > limit:
                return [str(frame[1]) for frame in stack[:-1]]
        elif token in (b"}", b"]"):
            if stack:
                stack.pop()
        elif top is not None:  # a comma
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
    return None


def _key(token: bytes) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1].decode("utf-8", "replace")
