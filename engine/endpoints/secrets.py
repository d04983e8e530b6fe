"""Endpoint signing secrets: issue, reveal, rotate with a grace period, reseal.

A row holds its current secret and, during a rotation's grace period, the one
before it; until `previous_secret_expires_at` both sign every request, so a
receiver holding either verifies it. Rotating again during a grace period
replaces the previous secret: only the two most recent ever sign.
Both columns are sealed by `engine.secretbox`; plaintext leaves this module
only to sign a request or to answer the API. `reseal_all` also seals the endpoint's
custom headers (`engine.sealed_fields`) under the current key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from engine import signing
from engine.db.models import Endpoint, db, utcnow
from engine.endpoints import receiver_auth
from engine.errors import ConflictError, InvalidInputError
from engine.sealed_fields import CURRENT, LEGACY, open_headers, seal_headers, seal_state
from engine.secretbox import SecretBox, is_sealed

MAX_GRACE_PERIOD_S = 7 * 24 * 3600


@dataclass(frozen=True)
class SecretView:
    """An endpoint's secrets in plaintext, for its owner."""

    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class ResealReport:
    """What `reseal_all` did: rows seen, values resealed, legacy plaintext found.

    `resealed`, `already_current` and `legacy_plaintext` count signing secrets; the
    `headers_` counts, the rows whose custom headers were sealed anew.
    """

    endpoints: int = 0
    resealed: int = 0
    already_current: int = 0
    legacy_plaintext: int = 0
    expired_cleared: int = 0
    changed_meanwhile: int = 0
    headers_resealed: int = 0
    headers_legacy_plaintext: int = 0
    receiver_auth_resealed: int = 0


def issue(endpoint_id: str, box: SecretBox, supplied: str | None = None) -> tuple[str, str]:
    """A new secret for an endpoint: (sealed value to store, plaintext).

    Raises:
        InvalidInputError: the supplied secret is not `whsec_` and base64 of 24-64 bytes.
    """
    if supplied is None:
        plaintext = signing.generate_secret()
    else:
        try:
            signing.decode_secret(supplied)
        except signing.InvalidSecretError as exc:
            raise InvalidInputError("secret", str(exc)) from None
        plaintext = supplied
    return box.seal(plaintext, endpoint_id), plaintext


def reveal(endpoint: Endpoint, box: SecretBox, *, now: dt.datetime | None = None) -> SecretView:
    """The current secret and, while its grace period runs, the previous one.

    Raises:
        CryptoError: a stored value does not decrypt with the configured keys.
    """
    now = now or utcnow()
    current = box.open(endpoint.secret, endpoint.id)
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.previous_secret is None or expires_at is None or expires_at <= now:
        return SecretView(current)
    return SecretView(current, box.open(endpoint.previous_secret, endpoint.id), expires_at)


def signing_secrets(
    endpoint: Endpoint, box: SecretBox, *, now: dt.datetime | None = None
) -> list[str]:
    """Every secret that signs a request now: the current one first.

    Raises:
        CryptoError: a stored value does not decrypt with the configured keys.
    """
    view = reveal(endpoint, box, now=now)
    return [view.secret] if view.previous_secret is None else [view.secret, view.previous_secret]


def rotate(
    endpoint: Endpoint,
    box: SecretBox,
    *,
    grace_period_s: int,
    supplied: str | None = None,
    now: dt.datetime | None = None,
) -> SecretView:
    """Issue a new secret; the current one keeps signing for `grace_period_s`.

    Raises:
        InvalidInputError: the supplied secret or the grace period is refused.
        ConflictError: the endpoint changed (another rotation, a deletion) meanwhile.
        CryptoError: the current secret does not decrypt.
    """
    if not 0 <= grace_period_s <= MAX_GRACE_PERIOD_S:
        raise InvalidInputError("grace_period_s", f"must be 0 to {MAX_GRACE_PERIOD_S} seconds")
    now = now or utcnow()
    current = box.open(endpoint.secret, endpoint.id)
    sealed, plaintext = issue(endpoint.id, box, supplied)
    expires_at = now + dt.timedelta(seconds=grace_period_s) if grace_period_s else None
    previous = box.seal(current, endpoint.id) if expires_at else None
    changed = (
        Endpoint.update(
            secret=sealed,
            previous_secret=previous,
            previous_secret_expires_at=expires_at,
            updated_at=now,
        )
        .where(
            (Endpoint.id == endpoint.id)
            & (Endpoint.secret == endpoint.secret)
            & Endpoint.deleted_at.is_null()
        )
        .execute()
    )
    if not changed:
        raise ConflictError("the endpoint's secret changed meanwhile; read it and try again")
    if expires_at is None:
        return SecretView(plaintext)
    return SecretView(plaintext, current, expires_at)


def reseal_all(box: SecretBox, *, batch: int = 500, now: dt.datetime | None = None) -> ResealReport:
    """Seal every endpoint's secrets and custom headers under the current key, in batches;
    safe to repeat.

    Legacy plaintext is sealed too, expired previous secrets are dropped.
    A row changed meanwhile (a rotation seals under the current key anyway) is left alone.

    Raises:
        CryptoError: a stored value does not decrypt with the configured keys.
    """
    now = now or utcnow()
    totals = dict.fromkeys(
        (
            "endpoints",
            "resealed",
            "already_current",
            "legacy_plaintext",
            "expired_cleared",
            "changed_meanwhile",
            "headers_resealed",
            "headers_legacy_plaintext",
            "receiver_auth_resealed",
        ),
        0,
    )
    for rows in _batches(batch):
        with db.atomic():
            for row in rows:
                totals["endpoints"] += 1
                for name, count in _reseal_row(row, box, now).items():
                    totals[name] += count
    return ResealReport(**totals)


def _batches(size: int) -> Iterator[list[Endpoint]]:
    after = ""
    while True:
        rows = list(
            Endpoint.select(
                Endpoint.id,
                Endpoint.secret,
                Endpoint.previous_secret,
                Endpoint.previous_secret_expires_at,
                Endpoint.headers,
                Endpoint.receiver_auth,
                Endpoint.updated_at,
            )
            .where(Endpoint.id > after)
            .order_by(Endpoint.id)
            .limit(size)
        )
        if not rows:
            return
        yield rows
        after = rows[-1].id


def _reseal_row(row: Endpoint, box: SecretBox, now: dt.datetime) -> dict[str, int]:
    counts = {"resealed": 0, "already_current": 0, "legacy_plaintext": 0, "expired_cleared": 0}
    changes: dict[object, object] = {}
    counts.update(_reseal_headers(row, box, changes))
    if seal_state(row.receiver_auth, box) != CURRENT:
        both = receiver_auth.opened(row.receiver_auth, box, row.id)
        changes[Endpoint.receiver_auth] = receiver_auth.seal(both["auth"], both["tls"], box, row.id)
        counts["receiver_auth_resealed"] = 1
    expired = row.previous_secret_expires_at is None or row.previous_secret_expires_at <= now
    if row.previous_secret is not None and expired:
        changes[Endpoint.previous_secret] = None
        changes[Endpoint.previous_secret_expires_at] = None
        counts["expired_cleared"] += 1
    for column, value in (
        (Endpoint.secret, row.secret),
        (Endpoint.previous_secret, None if expired else row.previous_secret),
    ):
        if value is None:
            continue
        if box.is_current(value):
            counts["already_current"] += 1
            continue
        counts["legacy_plaintext"] += 0 if is_sealed(value) else 1
        changes[column] = box.seal(box.open(value, row.id), row.id)
        counts["resealed"] += 1
    if changes:
        # Compare-and-swap: a rotation or a change of headers that ran meanwhile sealed
        # under the current key anyway.
        written = (
            Endpoint.update(changes)
            .where(
                (Endpoint.id == row.id)
                & (Endpoint.secret == row.secret)
                & _same(Endpoint.previous_secret, row.previous_secret)
                & _headers_unchanged(row, changes)
            )
            .execute()
        )
        if not written:
            return {"changed_meanwhile": 1}
    return counts


def _reseal_headers(row: Endpoint, box: SecretBox, changes: dict[object, object]) -> dict[str, int]:
    """Seal the row's headers anew into `changes` unless they are current; count it."""
    state = seal_state(row.headers, box)
    if state == CURRENT:
        return {"headers_resealed": 0, "headers_legacy_plaintext": 0}
    changes[Endpoint.headers] = seal_headers(open_headers(row.headers, box, row.id), box, row.id)
    return {"headers_resealed": 1, "headers_legacy_plaintext": int(state == LEGACY)}


def _headers_unchanged(row: Endpoint, changes: dict[object, object]) -> object:
    """The compare-and-swap's guard for new headers or receiver credentials: the row's
    `updated_at`, which every change of them moves; the values themselves would put their
    plaintext in the SQL that peewee logs at debug level."""
    if Endpoint.headers not in changes and Endpoint.receiver_auth not in changes:
        return Endpoint.id == row.id
    return Endpoint.updated_at == row.updated_at


def _same(column: object, value: str | None) -> object:
    return column.is_null() if value is None else column == value  # type: ignore[attr-defined]
