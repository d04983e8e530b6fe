"""Event type names and subscription patterns."""

from __future__ import annotations

import pytest

from engine.endpoints.filters import (
    EVENT_TYPE_PATTERN,
    compile_patterns,
    is_valid_event_type,
    is_valid_pattern,
    matches,
)


def test_the_event_type_pattern_is_the_published_one() -> None:
    assert EVENT_TYPE_PATTERN == r"^[a-zA-Z0-9_.-]{1,128}$"


@pytest.mark.parametrize(
    "name", ["billing.paid", "a", "A-b_c.9", "billing.invoice.paid", "x" * 128]
)
def test_well_formed_event_types_are_valid(name: str) -> None:
    assert is_valid_event_type(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 129, "billing paid", "billing/paid", "billing.*", "*", "é", "a\n", "ａ"],
)
def test_malformed_event_types_are_invalid(name: str) -> None:
    assert not is_valid_event_type(name)


@pytest.mark.parametrize("pattern", ["*", "billing.paid", "billing.*", "billing.invoice.*"])
def test_event_types_prefix_wildcards_and_star_are_valid_patterns(pattern: str) -> None:
    assert is_valid_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        ".*",
        "**",
        "billing*",
        "*.paid",
        "billing.*.paid",
        "bill ing.*",
        "x" * 127 + ".*",
    ],
)
def test_other_wildcards_are_invalid_patterns(pattern: str) -> None:
    assert not is_valid_pattern(pattern)


def test_a_prefix_pattern_may_be_128_characters_long() -> None:
    assert is_valid_pattern("x" * 126 + ".*")


@pytest.mark.parametrize(
    ("event_type", "patterns", "expected"),
    [
        ("billing.paid", [], True),
        ("billing.paid", ["*"], True),
        ("billing.paid", ["billing.paid"], True),
        ("billing.paid", ["billing.failed"], False),
        ("billing.paid", ["Billing.paid"], False),
        ("billing.paid", ["billing.*"], True),
        ("billing.invoice.paid", ["billing.*"], True),
        ("billing", ["billing.*"], False),
        ("billingx.paid", ["billing.*"], False),
        ("billing.", ["billing.*"], False),
        ("user.created", ["billing.*", "user.created"], True),
        ("user.deleted", ["billing.*", "user.created"], False),
        ("user.deleted", ["billing.*", "*"], True),
        ("billing.invoice.paid", ["billing.invoice.*"], True),
        ("billing.refund", ["billing.invoice.*"], False),
    ],
)
def test_matching_follows_exact_prefix_and_star_rules(
    event_type: str, patterns: list[str], expected: bool
) -> None:
    assert matches(event_type, patterns) is expected
    assert compile_patterns(patterns)(event_type) is expected


def test_a_compiled_predicate_can_be_reused_across_event_types() -> None:
    selected = compile_patterns(("billing.*", "user.created"))
    names = ["billing.paid", "billing", "user.created", "user.deleted", "billing.a.b.c"]
    assert [name for name in names if selected(name)] == [
        "billing.paid",
        "user.created",
        "billing.a.b.c",
    ]


def test_compile_patterns_accepts_any_iterable() -> None:
    assert compile_patterns(iter(["a.*"]))("a.b")
    assert not compile_patterns(iter(["a.*"]))("b.a")
