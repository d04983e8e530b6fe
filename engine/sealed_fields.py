"""Secrets inside JSON columns: an endpoint's custom headers, a tenant's alert channels.

Any text can be a header value or a PagerDuty key, so a `v1:` prefix alone cannot tell
a sealed value from a plain one. The secret part of such a column is stored as one
sealed JSON text (`engine.secretbox`) under the key `"(sealed)"`, which can never be a
header name or an alert field (parentheses are not token characters). A column without
it is legacy plaintext, read as is until `hookline secrets rotate-key` seals it.

The associated data names the row and the purpose (`endpoint-headers:<id>`,
`alert-channels:<id>`): a value copied to another row, or to the other column, does not
open. Answers never carry these values: each is shown as `"***"` beside a fingerprint,
an HMAC keyed from the box's current key, so two values can be told apart but a guessed
low-entropy secret cannot be confirmed offline. A `"***"` written back means "keep it".
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInputError
from engine.secretbox import SecretBox

__all__ = [
    "ALERT_SECRETS",
    "MASK",
    "SEALED",
    "fingerprint",
    "keep_masked",
    "masked",
    "open_channels",
    "open_headers",
    "seal_channels",
    "seal_headers",
    "seal_state",
]

SEALED = "(sealed)"
MASK = "***"
FINGERPRINT_PREFIX = "hmac-sha256:"
# The alert-channel fields sealed; `email_to` and `webhook_url` stay in the clear.
ALERT_SECRETS = ("slack_webhook_url", "pagerduty_routing_key", "webhook_secret")
_FINGERPRINT_LABEL = b"hookline secret fingerprint\x00"


def _headers_purpose(endpoint_id: str) -> str:
    return f"endpoint-headers:{endpoint_id}"


def _channels_purpose(tenant_id: str) -> str:
    return f"alert-channels:{tenant_id}"


def seal_headers(headers: Mapping[str, str], box: SecretBox, endpoint_id: str) -> dict[str, str]:
    """The `Endpoint.headers` column for these headers: names and values sealed together."""
    if not headers:
        return {}
    return {SEALED: box.seal(json.dumps(dict(headers)), _headers_purpose(endpoint_id))}


def open_headers(stored: Mapping[str, Any] | None, box: SecretBox, endpoint_id: str) -> dict:
    """An endpoint's headers in plaintext; cached by the box, so cheap on every delivery.

    Raises:
        CryptoError: the column does not open with the configured keys, or belongs to
            another endpoint.
    """
    if not stored:
        return {}
    if SEALED not in stored:
        return dict(stored)  # legacy plaintext
    opened: dict[str, str] = json.loads(box.open(stored[SEALED], _headers_purpose(endpoint_id)))
    return opened


def seal_channels(
    channels: Mapping[str, Any] | None, box: SecretBox, tenant_id: str
) -> dict[str, Any] | None:
    """The `Tenant.alert_channels` column: the secret fields that are set, sealed together."""
    if channels is None:
        return None
    stored = {k: v for k, v in channels.items() if k not in ALERT_SECRETS or v is None}
    secret = {k: v for k, v in channels.items() if k in ALERT_SECRETS and v is not None}
    if secret:
        stored[SEALED] = box.seal(json.dumps(secret), _channels_purpose(tenant_id))
    return stored


def open_channels(
    stored: Mapping[str, Any] | None, box: SecretBox, tenant_id: str
) -> dict[str, Any] | None:
    """A tenant's alert channels in plaintext (None: the settings apply).

    Raises:
        CryptoError: the column does not open with the configured keys, or belongs to
            another tenant.
    """
    if stored is None:
        return None
    opened = {k: v for k, v in stored.items() if k != SEALED}
    if SEALED in stored:
        opened.update(json.loads(box.open(stored[SEALED], _channels_purpose(tenant_id))))
    return opened


CURRENT, STALE, LEGACY = "current", "stale", "legacy"


def seal_state(stored: Mapping[str, Any] | None, box: SecretBox, names: Any = None) -> str:
    """What `rotate-key` finds in a column: `current` (sealed under the current key, or
    nothing secret in it), `stale` (sealed under a previous key) or `legacy` (secrets in
    plaintext: every value, or those `names` lists)."""
    if not stored:
        return CURRENT
    if SEALED in stored:
        return CURRENT if box.is_current(stored[SEALED]) else STALE
    if names is None or any(stored.get(name) is not None for name in names):
        return LEGACY
    return CURRENT


def fingerprint(value: str, box: SecretBox) -> str:
    """What tells two secret values apart in an answer, never the value: `hmac-sha256:` and
    8 hex digits of an HMAC under a key derived from the box's current key."""
    key = hmac.new(box.key, _FINGERPRINT_LABEL, hashlib.sha256).digest()
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return FINGERPRINT_PREFIX + digest[:8]


def masked(
    values: Mapping[str, Any] | None, box: SecretBox, names: Any = None
) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """`values` with each secret (every one, or those `names` lists) set shown as `"***"`,
    and the fingerprints of those secrets by name."""
    if values is None:
        return None, None
    shown: dict[str, Any] = {}
    prints: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, str) and (names is None or name in names):
            shown[name], prints[name] = MASK, fingerprint(value, box)
        else:
            shown[name] = value
    return shown, prints


def keep_masked(
    written: Mapping[str, Any], current: Mapping[str, Any] | None, field: str
) -> dict[str, Any]:
    """`written` with each `"***"` replaced by the current value of that name: a client that
    writes back what it read keeps the secrets it was shown masked.

    Header names are matched without regard to case, as HTTP does.

    Raises:
        InvalidInputError: a `"***"` stands for a value that does not exist; names
            `<field>.<name>`.
    """
    by_lower = {name.lower(): value for name, value in (current or {}).items()}
    kept: dict[str, Any] = {}
    for name, value in written.items():
        if value != MASK:
            kept[name] = value
            continue
        known = by_lower.get(name.lower())
        if not isinstance(known, str):
            raise InvalidInputError(
                f"{field}.{name}", '"***" keeps the current value, and there is none to keep'
            )
        kept[name] = known
    return kept
