"""Endpoint secrets on a real (SQLite) database: issue, reveal, rotate, reseal."""

from __future__ import annotations

import base64
import datetime as dt
import os
from typing import Any

import pytest

from engine.db.models import Endpoint, utcnow
from engine.endpoints import crud as endpoints
from engine.endpoints import secrets as endpoint_secrets
from engine.errors import ConflictError, CryptoError, InvalidInputError
from engine.secretbox import SecretBox
from engine.ssrf import AddressPolicy
from engine.tenancy.tenants import create_tenant

POLICY = AddressPolicy(allow_private=True)
MINE = "whsec_" + base64.b64encode(b"m" * 24).decode()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


@pytest.fixture
def tenant_id(sqlite_db: Any) -> str:
    return create_tenant("acme")[0].id


def create(tenant_id: str, box: SecretBox, **fields: Any) -> tuple[Endpoint, str]:
    return endpoints.create_endpoint(
        tenant_id, {"url": "https://example.com/hook", **fields}, POLICY, box
    )


def fresh(row: Endpoint) -> Endpoint:
    return Endpoint.get_by_id(row.id)


def test_a_new_endpoint_stores_its_generated_secret_sealed(tenant_id: str, box: SecretBox) -> None:
    row, secret = create(tenant_id, box)

    stored = fresh(row).secret
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert stored.startswith(f"v1:{box.key_id}:") and secret not in stored
    assert endpoint_secrets.reveal(fresh(row), box).secret == secret


def test_a_supplied_secret_is_kept(tenant_id: str, box: SecretBox) -> None:
    row, secret = create(tenant_id, box, secret=MINE)

    assert secret == MINE
    assert endpoint_secrets.signing_secrets(fresh(row), box) == [MINE]


@pytest.mark.parametrize(
    "supplied",
    [
        "whsec_" + base64.b64encode(b"s" * 23).decode(),
        "whsec_" + base64.b64encode(b"s" * 65).decode(),
        "whsec_not*base64",
        "sk_" + base64.b64encode(b"s" * 32).decode(),
    ],
    ids=["23-bytes", "65-bytes", "not-base64", "no-prefix"],
)
def test_a_bad_supplied_secret_is_refused_naming_the_field(
    tenant_id: str, box: SecretBox, supplied: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        create(tenant_id, box, secret=supplied)

    assert caught.value.field == "secret"
    assert Endpoint.select().count() == 0


def test_a_rotation_signs_with_both_secrets_until_the_grace_period_ends(
    tenant_id: str, box: SecretBox
) -> None:
    row, old = create(tenant_id, box)
    now = utcnow()

    view = endpoint_secrets.rotate(row, box, grace_period_s=3600, now=now)

    assert view.secret != old and view.previous_secret == old
    assert view.previous_secret_expires_at == now + dt.timedelta(hours=1)
    stored = fresh(row)
    assert old not in (stored.previous_secret or "")
    in_grace = now + dt.timedelta(minutes=59)
    after = now + dt.timedelta(minutes=61)
    assert endpoint_secrets.signing_secrets(stored, box, now=in_grace) == [view.secret, old]
    assert endpoint_secrets.signing_secrets(stored, box, now=after) == [view.secret]
    assert endpoint_secrets.reveal(stored, box, now=after).previous_secret is None


def test_a_rotation_without_grace_stops_the_old_secret_at_once(
    tenant_id: str, box: SecretBox
) -> None:
    row, _ = create(tenant_id, box)

    view = endpoint_secrets.rotate(row, box, grace_period_s=0, supplied=MINE)

    assert view.secret == MINE and view.previous_secret is None
    assert fresh(row).previous_secret is None
    assert endpoint_secrets.signing_secrets(fresh(row), box) == [MINE]


def test_rotating_again_replaces_the_previous_secret(tenant_id: str, box: SecretBox) -> None:
    row, first = create(tenant_id, box)
    second = endpoint_secrets.rotate(row, box, grace_period_s=600).secret

    third = endpoint_secrets.rotate(fresh(row), box, grace_period_s=600)

    assert third.previous_secret == second
    assert first not in endpoint_secrets.signing_secrets(fresh(row), box)


def test_a_rotation_racing_another_is_a_conflict(tenant_id: str, box: SecretBox) -> None:
    row, _ = create(tenant_id, box)
    stale = fresh(row)
    endpoint_secrets.rotate(row, box, grace_period_s=60)

    with pytest.raises(ConflictError):
        endpoint_secrets.rotate(stale, box, grace_period_s=60)


def test_a_grace_period_beyond_seven_days_is_refused(tenant_id: str, box: SecretBox) -> None:
    row, _ = create(tenant_id, box)

    with pytest.raises(InvalidInputError) as caught:
        endpoint_secrets.rotate(row, box, grace_period_s=7 * 86400 + 1)

    assert caught.value.field == "grace_period_s"


def test_resealing_moves_every_secret_to_the_current_key_and_is_idempotent(
    tenant_id: str, box: SecretBox
) -> None:
    legacy, _ = create(tenant_id, box)
    Endpoint.update(secret=MINE).where(Endpoint.id == legacy.id).execute()
    rotated, first = create(tenant_id, box)
    second = endpoint_secrets.rotate(rotated, box, grace_period_s=3600).secret
    new = SecretBox(os.urandom(32), (box.key,))

    report = endpoint_secrets.reseal_all(new, batch=1)
    again = endpoint_secrets.reseal_all(new, batch=1)

    assert (report.endpoints, report.resealed, report.legacy_plaintext) == (2, 3, 1)
    assert (again.resealed, again.already_current) == (0, 3)
    only_new = SecretBox(new.key)
    assert endpoint_secrets.signing_secrets(fresh(legacy), only_new) == [MINE]
    assert endpoint_secrets.signing_secrets(fresh(rotated), only_new) == [second, first]
    with pytest.raises(CryptoError):
        endpoint_secrets.reveal(fresh(rotated), box)


def test_resealing_drops_an_expired_previous_secret(tenant_id: str, box: SecretBox) -> None:
    row, _ = create(tenant_id, box)
    endpoint_secrets.rotate(row, box, grace_period_s=60)

    report = endpoint_secrets.reseal_all(box, now=utcnow() + dt.timedelta(minutes=2))

    assert report.expired_cleared == 1 and report.resealed == 0
    assert fresh(row).previous_secret is None and fresh(row).previous_secret_expires_at is None
