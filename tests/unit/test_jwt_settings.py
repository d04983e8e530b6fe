"""JWT settings: every accepted algorithm needs a key, and secrets are long enough."""

from __future__ import annotations

import pytest

from engine.errors import SettingsError
from tests.factories import make_settings


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HOOKLINE_JWT_HS256_SECRET": "short-secret-1234"}, "HOOKLINE_JWT_HS256_SECRET"),
        ({"HOOKLINE_JWT_ALGORITHMS": "HS256"}, "HOOKLINE_JWT_ALGORITHMS"),
        ({"HOOKLINE_JWT_ALGORITHMS": "RS256"}, "HOOKLINE_JWT_ALGORITHMS"),
        ({"HOOKLINE_JWT_ALGORITHMS": "none"}, "HOOKLINE_JWT_ALGORITHMS"),
        ({"HOOKLINE_JWT_ALGORITHMS": "HS256,RS512"}, "HOOKLINE_JWT_ALGORITHMS"),
        ({"HOOKLINE_JWT_PUBLIC_KEY_FILE": "/no/such/key.pem"}, "HOOKLINE_JWT_PUBLIC_KEY_FILE"),
        ({"HOOKLINE_JWT_JWKS_FILE": "/no/such/jwks.json"}, "HOOKLINE_JWT_JWKS_FILE"),
        ({"HOOKLINE_JWT_LEEWAY_S": "-1"}, "HOOKLINE_JWT_LEEWAY_S"),
    ],
    ids=[
        "short-secret",
        "hs-without-secret",
        "rs-without-key",
        "none",
        "rs512",
        "pem",
        "jwks",
        "leeway",
    ],
)
def test_unusable_jwt_settings_are_refused_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(**env)
    assert caught.value.variable == variable


def test_the_defaults_accept_no_jwt_and_read_the_tenant_and_scope_claims() -> None:
    settings = make_settings()

    assert settings.jwt_algorithms == ()
    assert settings.jwt_hs256_secret is None
    assert (settings.jwt_tenant_claim, settings.jwt_scope_claim) == ("tenant", "scope")


def test_the_hs256_secret_is_kept_out_of_the_settings_repr() -> None:
    secret = "a-secret-that-must-not-be-logged-0123456789"

    assert secret not in repr(make_settings(HOOKLINE_JWT_HS256_SECRET=secret))


def test_algorithms_are_read_case_insensitively() -> None:
    settings = make_settings(HOOKLINE_JWT_ALGORITHMS="hs256", HOOKLINE_JWT_HS256_SECRET="x" * 32)

    assert settings.jwt_algorithms == ("HS256",)
