"""JSON Schemas for every request and response body, and the OpenAPI document."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

__all__ = ["load", "names", "openapi"]

_SUFFIX = ".schema.json"
_COMPONENTS = "#/components/schemas/"


def _read(filename: str) -> Any:
    """Parse one JSON file shipped in this package."""
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    """List the schema stems once."""
    files = (e.name for e in resources.files(__name__).iterdir())
    return tuple(sorted(f.removesuffix(_SUFFIX) for f in files if f.endswith(_SUFFIX)))


def names() -> list[str]:
    """Return the name of every schema, e.g. ``endpoint_create``."""
    return list(_names())


@functools.lru_cache(maxsize=64)
def load(name: str) -> dict[str, Any]:
    """Return the parsed ``<name>.schema.json`` (shared: do not mutate it)."""
    if name not in _names():
        raise KeyError(f"no schema named {name!r}")
    schema: dict[str, Any] = _read(name + _SUFFIX)
    return schema


def _target(ref: str, own: str, titles: dict[str, str]) -> str:
    """Translate one file-relative ``$ref`` into a ``components.schemas`` pointer."""
    location, _, fragment = ref.partition("#")
    if ":" in location:  # absolute URI: not one of our files
        return ref
    filename = location.rsplit("/", 1)[-1]
    unknown_file = bool(filename) and filename not in titles
    if unknown_file or (fragment and not fragment.startswith("/")):
        raise ValueError(f"{own}: cannot bundle $ref {ref!r}")
    return _COMPONENTS + (titles[filename] if filename else own) + fragment


def _rewrite(node: Any, own: str, titles: dict[str, str]) -> Any:
    """Return a copy of ``node`` whose ``$ref``s point into ``components.schemas``."""
    if isinstance(node, list):
        return [_rewrite(item, own, titles) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite(value, own, titles) for key, value in node.items()}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = _target(out["$ref"], own, titles)
    return out


@functools.lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    """Return ``openapi.json`` with every schema inlined (shared: do not mutate it)."""
    titles = {name + _SUFFIX: load(name)["title"] for name in _names()}
    if len(set(titles.values())) != len(titles):
        raise ValueError("two schema files share a title")
    document: dict[str, Any] = _read("openapi.json")
    bundled = document.setdefault("components", {}).setdefault("schemas", {})
    for filename, title in titles.items():
        if title in bundled:
            raise ValueError(f"openapi.json already defines components.schemas.{title}")
        schema = load(filename.removesuffix(_SUFFIX))
        schema = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
        bundled[title] = _rewrite(schema, title, titles)
    return document
