"""Endpoint secrets at rest: AES-256-GCM under an operator key, rotated by key id.

A sealed value is `v1:<key id>:<base64url(nonce + ciphertext + tag)>`. The key
id is a short fingerprint of the key that sealed it, so a value sealed under a
retired key is found and still opened while that key is listed in
`HOOKLINE_SECRET_KEY_PREVIOUS`. The endpoint id is the associated data: a
value copied into another endpoint's row does not open.

A stored value without the `v1:` prefix is a legacy plaintext secret, from
before encryption at rest; it is read as is, and `hookline secrets rotate-key`
seals it.

With no `HOOKLINE_SECRET_KEY`, the embedded deployment generates one into
`<data_dir>/secret.key` (mode 0600) on first start. A deployment on PostgreSQL
must configure the key: its processes run on several hosts and must share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import CryptoError, SettingsError

__all__ = [
    "KEY_FILE",
    "KeySettings",
    "SecretBox",
    "from_settings",
    "generate_key",
    "key_id",
    "parse_key",
]

log = structlog.get_logger("hookline.secretbox")

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
# Opened secrets a box remembers (engine.secretbox.SecretBox._opened); past it, it starts over.
OPENED_MAX = 10_000
KEY_FILE = "secret.key"
KEY_VARIABLE = "HOOKLINE_SECRET_KEY"
PREVIOUS_VARIABLE = "HOOKLINE_SECRET_KEY_PREVIOUS"
_KEY_ID_LABEL = b"hookline secret key id\x00"


def parse_key(text: str, variable: str = KEY_VARIABLE) -> bytes:
    """Decode a key written as base64 (standard or URL-safe) of 32 bytes.

    Raises:
        SettingsError: the text is not base64 of exactly 32 bytes; names `variable`.
    """
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(variable, "must be base64 of 32 random bytes") from None
    if len(key) != KEY_BYTES:
        raise SettingsError(variable, f"must be base64 of 32 bytes, got {len(key)} bytes")
    return key


def generate_key() -> str:
    """A fresh key, as base64 text for `HOOKLINE_SECRET_KEY`."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The key's public fingerprint: 12 hex digits of a labelled SHA-256."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:12]


@dataclass(frozen=True)
class SecretBox:
    """Seals with the current key; opens with the current or any previous one."""

    key: bytes
    previous: tuple[bytes, ...] = ()
    # Values opened before, by (stored value, endpoint id): a worker signs every delivery
    # with its endpoint's secret, and decrypting it each time cost more than the signature.
    # A rotation stores a new value, so an entry never goes stale; bounded by OPENED_MAX.
    _opened: dict[tuple[str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for key in (self.key, *self.previous):
            if len(key) != KEY_BYTES:
                raise ValueError(f"a key is {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r}, previous={len(self.previous)})"

    @property
    def key_id(self) -> str:
        """The fingerprint of the key new values are sealed with."""
        return key_id(self.key)

    def seal(self, plaintext: str, endpoint_id: str) -> str:
        """Encrypt a secret for one endpoint's row."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode("utf-8"), endpoint_id.encode())
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{VERSION}:{self.key_id}:{encoded}"

    def open(self, stored: str, endpoint_id: str) -> str:
        """Decrypt a stored secret; a value without the `v1:` prefix is legacy plaintext.

        Raises:
            CryptoError: no configured key has the value's key id, or the value
                was altered or belongs to another endpoint.
        """
        if not is_sealed(stored):
            return stored
        known = self._opened.get((stored, endpoint_id))
        if known is not None:
            return known
        _, kid, encoded = stored.split(":", 2)
        key = self._key_for(kid)
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            plaintext = AESGCM(key).decrypt(nonce, sealed, endpoint_id.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise CryptoError(
                f"the secret of endpoint {endpoint_id} does not decrypt: "
                "altered, or sealed for another endpoint"
            ) from None
        opened = plaintext.decode("utf-8")
        if len(self._opened) >= OPENED_MAX:
            self._opened.clear()
        self._opened[(stored, endpoint_id)] = opened
        return opened

    def is_current(self, stored: str) -> bool:
        """True when the value is sealed under the current key."""
        return is_sealed(stored) and stored.split(":", 2)[1] == self.key_id

    def _key_for(self, kid: str) -> bytes:
        for key in (self.key, *self.previous):
            if key_id(key) == kid:
                return key
        raise CryptoError(
            f"no configured key has id {kid}: add the key that sealed it to {PREVIOUS_VARIABLE}"
        )


def is_sealed(stored: str) -> bool:
    """True for a `v1:<key id>:<data>` value, False for legacy plaintext."""
    return stored.startswith(VERSION + ":") and stored.count(":") >= 2


class KeySettings(Protocol):
    """The settings a box is opened from; `engine.settings.Settings` has them all.

    A protocol, not `Settings` itself: the settings' parsers read keys with
    `parse_key`, so importing them here would make a cycle.
    """

    @property
    def secret_key(self) -> str | None: ...

    @property
    def secret_key_previous(self) -> Sequence[str]: ...

    @property
    def embedded(self) -> bool: ...

    @property
    def data_dir(self) -> str: ...


def from_settings(settings: KeySettings) -> SecretBox:
    """The box the settings name; the embedded deployment may generate its key file.

    Raises:
        SettingsError: a key is malformed, or no key is configured outside the
            embedded deployment.
    """
    previous = tuple(parse_key(text, PREVIOUS_VARIABLE) for text in settings.secret_key_previous)
    if settings.secret_key:
        return SecretBox(parse_key(settings.secret_key), previous)
    if not settings.embedded:
        raise SettingsError(
            KEY_VARIABLE,
            "is required with PostgreSQL and RabbitMQ (every process must share it); "
            "generate one with: python -c 'import base64,os;"
            "print(base64.b64encode(os.urandom(32)).decode())'",
        )
    return SecretBox(_load_or_create_key_file(settings.data_dir), previous)


def _load_or_create_key_file(data_dir: str) -> bytes:
    """Read `<data_dir>/secret.key`, creating it (0600) if it does not exist yet."""
    path = os.path.abspath(os.path.join(data_dir, KEY_FILE))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        text = generate_key()
        draft = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
        try:
            # link() never replaces: of two processes starting at once, one key wins whole.
            os.link(draft, path)
            log.warning(
                "secret_key_generated",
                path=path,
                detail=f"endpoint secrets are encrypted with a key generated into {path}; "
                f"back it up with the database, or set {KEY_VARIABLE}",
            )
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path, encoding="ascii") as existing:
        return parse_key(existing.read(), f"{KEY_VARIABLE} (read from {path})")


def reseal_plan(box: SecretBox, values: Sequence[str | None]) -> bool:
    """True when any of a row's stored values is not sealed under the current key."""
    return any(value is not None and not box.is_current(value) for value in values)
