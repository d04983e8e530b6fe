"""Parsers of environment values for `engine.settings`: each takes the variable's
name and its raw text, answers the typed value, or raises `SettingsError`
naming the variable."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from engine.errors import SettingsError
from engine.secretbox import parse_key
from engine.signing import InvalidSecretError, decode_secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T", int, float)


def _bounded(kind: Callable[[str], T], noun: str, low: T, high: T) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(name, f"expected {noun}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {value}")
        return value

    return parse


def integer(low: int, high: int) -> Callable[[str, str], int]:
    """A whole number within [low, high]."""
    return _bounded(int, "an integer", low, high)


def number(low: float, high: float) -> Callable[[str, str], float]:
    """A decimal number within [low, high]."""
    return _bounded(float, "a number", low, high)


def boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"expected true or false, got {raw!r}")


def text(name: str, raw: str) -> str:
    return raw


def secret(name: str, raw: str) -> str:
    if len(raw) < 16:
        raise SettingsError(name, "must be at least 16 characters")
    return raw


def url(*schemes: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme.split("+")[0] not in schemes:
            raise SettingsError(name, f"scheme must be one of {', '.join(schemes)}, got {raw!r}")
        if parts.scheme != "sqlite" and not parts.hostname:
            raise SettingsError(name, f"has no host: {raw!r}")
        return raw

    return parse


def trusted_url(name: str, raw: str) -> str:
    """An https URL, or http to a loopback host: where keys that grant access come from."""
    url("http", "https")(name, raw)
    parts = urlsplit(raw)
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        raise SettingsError(name, f"must be https (http only to a loopback host), got {raw!r}")
    return raw


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(name: str, raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(name, f"expected host:port, got {raw!r}")
    return raw


def schedule(name: str, raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(name, f"expected comma-separated seconds, got {raw!r}") from None
    if not 1 <= len(values) <= 50 or any(not 1 <= v <= 7 * 86400 for v in values):
        raise SettingsError(name, "expected 1 to 50 delays, each 1 to 604800 seconds")
    return values


def cidrs(name: str, raw: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(","))
    except ValueError as exc:
        raise SettingsError(name, f"expected comma-separated CIDRs: {exc}") from None


def aes_key(name: str, raw: str) -> str:
    parse_key(raw, name)
    return raw


def aes_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    for key in keys:
        parse_key(key, name)
    return keys


def addresses(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    for value in values:
        if "@" not in value or any(char in value for char in "\r\n <>\x00"):
            raise SettingsError(name, f"expected comma-separated email addresses, got {value!r}")
    return values


def whsec(name: str, raw: str) -> str:
    try:
        decode_secret(raw)
    except InvalidSecretError as exc:
        raise SettingsError(name, str(exc)) from None
    return raw


def choice(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw.lower() not in options:
            raise SettingsError(name, f"must be one of {', '.join(options)}, got {raw!r}")
        return raw.lower()

    return parse


def file(name: str, raw: str) -> str:
    if not os.path.isfile(raw):
        raise SettingsError(name, f"no such file: {raw!r}")
    return raw


def jwt_algorithms(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(part.strip().upper() for part in raw.split(",") if part.strip())
    unknown = sorted(set(values) - {"HS256", "RS256", "ES256"})
    if not values or unknown:
        raise SettingsError(name, f"expected HS256, RS256 or ES256, got {raw!r}")
    return values


def claim(name: str, raw: str) -> str:
    if len(raw) > 64:
        raise SettingsError(name, "must be at most 64 characters")
    return raw
