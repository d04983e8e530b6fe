"""The identity provider's keys (`api.jwks`) and its tokens' scopes, on a fake clock and fetch."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from api.jwks import KEYS_TTL_S, REFETCH_S, RETRY_S, KeysUnavailable, ProviderKeys, parse_jwks
from api.tokens import provider_scopes
from engine.errors import SettingsError
from tests.factories import make_settings

ISSUER = "https://id.example.com/tenant/"


def jwk(kid: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key)), "kid": kid, "use": "sig"}


class Provider:
    """A fake provider: what its URLs answer, what was asked, and whether it is up."""

    def __init__(self, *kids: str) -> None:
        self.jwks = {"keys": [jwk(kid) for kid in kids]}
        self.discovery = {"issuer": ISSUER, "jwks_uri": "https://id.example.com/keys"}
        self.asked: list[str] = []
        self.up = True

    def fetch(self, url: str) -> Any:
        self.asked.append(url)
        if not self.up:
            raise ConnectionRefusedError("provider down")
        return self.discovery if url.endswith("openid-configuration") else self.jwks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keys(provider: Provider, clock: Clock, **kwargs: Any) -> ProviderKeys:
    where = kwargs or {"issuer": ISSUER, "jwks_url": None}
    return ProviderKeys(**where, fetch=provider.fetch, clock=clock)


def test_discovery_finds_the_jwks_and_the_keys_are_fetched_once() -> None:
    provider, clock = Provider("k1", "k2"), Clock()
    held = keys(provider, clock)

    first = held.keys_for("k1")
    again = held.keys_for("k2")
    every = held.keys_for(None)

    assert provider.asked == [
        "https://id.example.com/tenant/.well-known/openid-configuration",
        "https://id.example.com/keys",
    ]
    assert [k.kid for k in first] == ["k1"] and [k.kid for k in again] == ["k2"]
    assert [k.kid for k in every] == ["k1", "k2"]


def test_an_unknown_kid_refetches_at_most_once_per_refetch_interval() -> None:
    provider, clock = Provider("k1"), Clock()
    held = keys(provider, clock, issuer=None, jwks_url="https://id.example.com/keys")
    held.keys_for("k1")
    provider.jwks = {"keys": [jwk("k2")]}  # the provider rotated

    found = held.keys_for("k2")
    for _ in range(50):  # a flood of made-up kids
        assert held.keys_for("forged") == []
    fetched_before = len(provider.asked)
    clock.now += REFETCH_S
    held.keys_for("forged")

    assert [k.kid for k in found] == ["k2"], "rotation needs no restart"
    assert fetched_before == 2, "one fetch at start, one for k2, none for the flood"
    assert len(provider.asked) == 3, "another after the interval"


def test_a_provider_down_leaves_the_cached_keys_in_use() -> None:
    provider, clock = Provider("k1"), Clock()
    held = keys(provider, clock, issuer=None, jwks_url="https://id.example.com/keys")
    held.keys_for("k1")
    provider.up = False
    clock.now += KEYS_TTL_S + 1  # stale: a refetch is tried, and fails

    still = held.keys_for("k1")

    assert [k.kid for k in still] == ["k1"]
    assert len(provider.asked) == 2


def test_no_keys_at_all_is_unavailable_not_a_bad_token_and_asked_again_after_a_pause() -> None:
    provider, clock = Provider("k1"), Clock()
    provider.up = False
    held = keys(provider, clock)
    for _ in range(20):
        with pytest.raises(KeysUnavailable):
            held.keys_for("k1")
    asked_while_down = len(provider.asked)
    provider.up = True
    clock.now += RETRY_S

    assert asked_while_down == 1, "not once per request"
    assert [k.kid for k in held.keys_for("k1")] == ["k1"]


def test_a_discovery_document_of_another_issuer_is_refused() -> None:
    provider, clock = Provider("k1"), Clock()
    provider.discovery["issuer"] = "https://evil.example.com/"
    with pytest.raises(KeysUnavailable):
        keys(provider, clock).keys_for("k1")
    assert provider.asked == [provider.asked[0]], "its jwks_uri is never fetched"


def test_only_asymmetric_public_signing_keys_are_taken() -> None:
    private = {**jwk("priv"), "d": "AAAA"}
    symmetric = {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}
    encryption = {**jwk("enc"), "use": "enc"}

    taken = parse_jwks({"keys": [private, symmetric, encryption, jwk("ok")]})

    assert [k.kid for k in taken] == ["ok"]
    with pytest.raises(ValueError, match="no RSA or EC signing key"):
        parse_jwks({"keys": [symmetric]})
    with pytest.raises(ValueError, match="not a JWKS"):
        parse_jwks(["keys"])


@pytest.mark.parametrize(
    ("payload", "claim", "prefix", "expected"),
    [
        (
            {"scope": "events:write endpoints:read openid"},
            "scope",
            "",
            {"events:write", "endpoints:read"},
        ),
        ({"scp": ["events:write", "profile"]}, "scope", "", {"events:write"}),
        ({"scope": "hookline:events:write events:read"}, "scope", "hookline:", {"events:write"}),
        ({"roles": ["endpoints:write"]}, "roles", "", {"endpoints:write"}),
        ({"scope": 7}, "scope", "", set()),
        ({}, "scope", "", set()),
    ],
)
def test_the_providers_scopes_map_to_hooklines(
    payload: dict[str, Any], claim: str, prefix: str, expected: set[str]
) -> None:
    assert provider_scopes(payload, claim, prefix) == expected


def test_the_provider_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="OAUTH2_AUDIENCE"):
        make_settings(HOOKLINE_OAUTH2_ISSUER=ISSUER)
    with pytest.raises(SettingsError, match="must be https"):
        make_settings(HOOKLINE_OAUTH2_JWKS_URL="http://id.example.com/keys")
    loopback = make_settings(
        HOOKLINE_OAUTH2_JWKS_URL="http://127.0.0.1:9/keys", HOOKLINE_OAUTH2_AUDIENCE="hookline"
    )
    assert loopback.oauth2_jwks_url == "http://127.0.0.1:9/keys"
