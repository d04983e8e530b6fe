"""Endpoint secrets at rest: sealing, key ids, previous keys, the embedded key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine import secretbox
from engine.errors import CryptoError, SettingsError
from engine.secretbox import SecretBox
from tests.factories import make_settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def new_box(*previous: SecretBox) -> SecretBox:
    return SecretBox(os.urandom(32), tuple(box.key for box in previous))


def test_a_sealed_secret_opens_to_the_plaintext() -> None:
    box = new_box()

    sealed = box.seal(SECRET, "ep_1")

    assert box.open(sealed, "ep_1") == SECRET


def test_a_sealed_value_carries_the_version_and_key_id_but_not_the_plaintext() -> None:
    box = new_box()

    sealed = box.seal(SECRET, "ep_1")

    version, key_id, data = sealed.split(":", 2)
    assert (version, key_id) == ("v1", box.key_id)
    assert len(key_id) == 12
    assert SECRET not in sealed and SECRET[6:] not in sealed and "whsec_" not in data


def test_sealing_twice_gives_different_values() -> None:
    box = new_box()

    assert box.seal(SECRET, "ep_1") != box.seal(SECRET, "ep_1")


def test_a_value_moved_to_another_endpoint_does_not_open() -> None:
    box = new_box()
    sealed = box.seal(SECRET, "ep_1")

    with pytest.raises(CryptoError, match="ep_2"):
        box.open(sealed, "ep_2")


@pytest.mark.parametrize("position", [-1, -30, 20], ids=["tag", "ciphertext", "nonce"])
def test_an_altered_value_does_not_open(position: int) -> None:
    box = new_box()
    sealed = box.seal(SECRET, "ep_1")
    index = position % len(sealed)
    altered = sealed[:index] + ("A" if sealed[index] != "A" else "B") + sealed[index + 1 :]

    with pytest.raises(CryptoError):
        box.open(altered, "ep_1")


def test_a_value_sealed_under_a_previous_key_still_opens() -> None:
    old = new_box()
    sealed = old.seal(SECRET, "ep_1")

    current = new_box(old)

    assert current.open(sealed, "ep_1") == SECRET
    assert not current.is_current(sealed)
    assert current.is_current(current.seal(SECRET, "ep_1"))


def test_a_value_under_an_unknown_key_names_the_previous_keys_variable() -> None:
    sealed = new_box().seal(SECRET, "ep_1")

    with pytest.raises(CryptoError, match="HOOKLINE_SECRET_KEY_PREVIOUS"):
        new_box().open(sealed, "ep_1")


def test_a_legacy_plaintext_value_is_read_as_is() -> None:
    box = new_box()

    assert box.open(SECRET, "ep_1") == SECRET
    assert not box.is_current(SECRET)


def test_the_key_id_is_a_fingerprint_not_the_key() -> None:
    key = os.urandom(32)

    assert secretbox.key_id(key) == secretbox.key_id(key)
    assert secretbox.key_id(key) != secretbox.key_id(os.urandom(32))
    assert secretbox.key_id(key) not in key.hex()


def test_the_repr_shows_no_key() -> None:
    box = new_box()

    assert box.key.hex() not in repr(box) and box.key_id in repr(box)


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", base64.b64encode(b"x" * 16).decode(), base64.b64encode(b"x" * 33).decode()],
    ids=["empty", "garbage", "16-bytes", "33-bytes"],
)
def test_a_malformed_key_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(HOOKLINE_SECRET_KEY=text or "=")

    assert caught.value.variable == "HOOKLINE_SECRET_KEY"


def test_a_malformed_previous_key_is_refused_naming_its_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(HOOKLINE_SECRET_KEY_PREVIOUS=f"{secretbox.generate_key()},short")

    assert caught.value.variable == "HOOKLINE_SECRET_KEY_PREVIOUS"


def test_url_safe_and_unpadded_keys_are_accepted() -> None:
    key = os.urandom(32)
    text = base64.urlsafe_b64encode(key).decode().rstrip("=")

    assert secretbox.parse_key(text) == key


def test_configured_keys_build_the_box(tmp_path: Path) -> None:
    current, previous = secretbox.generate_key(), secretbox.generate_key()
    settings = make_settings(
        HOOKLINE_DATA_DIR=str(tmp_path),
        HOOKLINE_SECRET_KEY=current,
        HOOKLINE_SECRET_KEY_PREVIOUS=previous,
    )

    box = secretbox.from_settings(settings)

    assert box.key == base64.b64decode(current)
    assert box.previous == (base64.b64decode(previous),)
    assert not (tmp_path / "secret.key").exists()


def test_the_embedded_deployment_generates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = make_settings(HOOKLINE_DATA_DIR=str(tmp_path / "var"), HOOKLINE_SECRET_KEY="")

    first = secretbox.from_settings(settings)
    again = secretbox.from_settings(settings)

    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.key == again.key == secretbox.parse_key(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_generating_the_key_file_is_logged_once_with_its_path(tmp_path: Path) -> None:
    settings = make_settings(HOOKLINE_DATA_DIR=str(tmp_path), HOOKLINE_SECRET_KEY="")

    with capture_logs() as logs:
        secretbox.from_settings(settings)
        secretbox.from_settings(settings)

    [generated] = [log for log in logs if log["event"] == "secret_key_generated"]
    assert generated["path"] == str(tmp_path / "secret.key")
    assert generated["log_level"] == "warning"


def test_a_deployment_on_postgresql_must_configure_the_key(tmp_path: Path) -> None:
    settings = make_settings(
        HOOKLINE_DATA_DIR=str(tmp_path),
        HOOKLINE_DATABASE_URL="postgresql://hookline@127.0.0.1/hookline",
        HOOKLINE_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/%2F",
        HOOKLINE_SECRET_KEY="",
    )

    with pytest.raises(SettingsError) as caught:
        secretbox.from_settings(settings)

    assert caught.value.variable == "HOOKLINE_SECRET_KEY"
    assert not (tmp_path / "secret.key").exists()


def test_a_corrupt_key_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")
    settings = make_settings(HOOKLINE_DATA_DIR=str(tmp_path), HOOKLINE_SECRET_KEY="")

    with pytest.raises(SettingsError, match=r"secret\.key"):
        secretbox.from_settings(settings)


def test_a_value_opened_once_is_not_decrypted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    box = new_box()
    sealed = box.seal(SECRET, "ep_1")
    decrypted: list[bytes] = []
    real = secretbox.AESGCM.decrypt

    def counting(self: object, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        decrypted.append(aad)
        return real(self, nonce, data, aad)  # type: ignore[arg-type]

    monkeypatch.setattr(secretbox.AESGCM, "decrypt", counting)

    assert [box.open(sealed, "ep_1") for _ in range(3)] == [SECRET] * 3
    assert decrypted == [b"ep_1"]
    with pytest.raises(CryptoError):
        box.open(sealed, "ep_2")  # remembered for its own endpoint only


def test_the_values_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secretbox, "OPENED_MAX", 3)
    box = new_box()
    values = [box.seal(f"{SECRET}{n}", f"ep_{n}") for n in range(7)]

    assert [box.open(v, f"ep_{n}") for n, v in enumerate(values)] == [
        f"{SECRET}{n}" for n in range(7)
    ]
    assert len(box._opened) <= 3
