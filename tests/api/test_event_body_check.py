"""The quick check of `POST /v1/events` bodies never accepts what the JSON Schema refuses."""

from __future__ import annotations

import random
from typing import Any

import pytest

from api.validation import _plain_event, validator

VALUES: list[Any] = [
    "order.paid",
    "a",
    "x" * 128,
    "x" * 129,
    "",
    "order.paid\n",
    "bad type!",
    "ünïcode",
    "k",
    "k" * 255,
    "k" * 256,
    {},
    {"n": 1, "nested": {"deep": [1, 2, None]}},
    [],
    [1],
    None,
    True,
    0,
    7,
    1.5,
]
KEYS = ["event_type", "payload", "idempotency_key", "extra"]


def random_body(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(VALUES)  # not even an object
    chosen = [key for key in KEYS if rng.random() < (0.85 if key != "extra" else 0.1)]
    return {key: rng.choice(VALUES) for key in chosen}


def schema_accepts(body: Any) -> bool:
    return not list(validator("event_create").iter_errors(body))


@pytest.mark.parametrize(
    "body",
    [
        {"event_type": "order.paid", "payload": {}},
        {"event_type": "bench.event", "payload": {"n": 1, "pad": "x" * 256}},
        {"event_type": "a-b_c.D9", "payload": {"x": [1, {"y": None}]}, "idempotency_key": "k"},
        {"event_type": "x" * 128, "payload": {}, "idempotency_key": "k" * 255},
    ],
)
def test_ordinary_bodies_pass_the_quick_check(body: dict[str, Any]) -> None:
    assert _plain_event(body)
    assert schema_accepts(body)


def test_the_quick_check_accepts_nothing_the_schema_refuses() -> None:
    rng = random.Random(6)
    accepted = 0
    for _ in range(20_000):
        body = random_body(rng)
        if _plain_event(body):
            accepted += 1
            assert schema_accepts(body), body
    assert accepted > 100, "the corpus must exercise the accepting side too"


@pytest.mark.parametrize(
    "body",
    [
        {"event_type": "order.paid\n", "payload": {}},  # the schema's `$` lets this one through
        {"event_type": "order.paid", "payload": {}, "idempotency_key": None},
        {"event_type": "order.paid", "payload": {}, "extra": 1},
        {"event_type": "order.paid"},
        {"event_type": True, "payload": {}},
        ["event_type", "payload"],
    ],
)
def test_anything_unusual_goes_to_the_full_validator(body: Any) -> None:
    assert not _plain_event(body)
