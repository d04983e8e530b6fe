"""Payload filters: each operator, the missing-path rule, and what is refused when saved."""

from __future__ import annotations

from typing import Any

import pytest

from engine.endpoints.payload_filter import (
    MAX_LEVELS,
    MAX_NODES,
    FilterProblem,
    check,
    compile_filter,
    document,
    validate,
)
from engine.errors import InvalidInputError

ORDER = {
    "amount": 150,
    "price": 9.5,
    "currency": "usd",
    "paid": True,
    "note": None,
    "tags": ["vip", "eu", 7],
    "customer": {"country": "FR", "email": "ana@example.com"},
    "items": [{"sku": "A-1"}, {"sku": "B-2", "qty": 2}],
}


def hit(spec: dict[str, Any], data: Any = None, event_type: str = "order.paid") -> bool:
    return compile_filter(spec)(document(event_type, ORDER if data is None else data))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"data.currency": "usd"}, True),
        ({"data.currency": "eur"}, False),
        ({"data.customer.country": "FR"}, True),
        ({"data.amount": 150.0}, True),  # numbers compare as numbers
        ({"data.amount": "150"}, False),  # no coercion from strings
        ({"data.paid": 1}, False),  # a boolean is not a number
        ({"data.paid": True}, True),
        ({"data.note": None}, True),
        ({"data.tags": "vip"}, True),  # an array field contains the literal
        ({"data.tags": 7}, True),
        ({"data.tags": "us"}, False),
        ({"data.tags": ["vip", "eu", 7]}, True),  # or equals it whole
        ({"data.items.1.sku": "B-2"}, True),  # a decimal name indexes an array
        ({"data.items.2.sku": "B-2"}, False),
        ({"type": "order.paid"}, True),
        ({"type": "order.refunded"}, False),
    ],
)
def test_a_literal_means_equality_or_an_array_element(spec: dict[str, Any], expected: bool) -> None:
    assert hit(spec) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"$eq": "usd"}, True),
        ({"$eq": "USD"}, False),
        ({"$ne": "eur"}, True),
        ({"$ne": "usd"}, False),
        ({"$in": ["usd", "eur"]}, True),
        ({"$in": ["gbp"]}, False),
        ({"$in": []}, False),
        ({"$nin": ["gbp", "eur"]}, True),
        ({"$nin": ["usd"]}, False),
        ({"$prefix": "us"}, True),
        ({"$prefix": "sd"}, False),
        ({"$suffix": "sd"}, True),
        ({"$suffix": "us"}, False),
        ({"$contains": "s"}, True),
        ({"$contains": "x"}, False),
        ({"$exists": True}, True),
        ({"$exists": False}, False),
        ({"$gt": "usc"}, True),  # strings compare by code point
        ({"$lt": "usc"}, False),
        ({"$gt": 1}, False),  # a string is not ordered against a number
    ],
)
def test_each_operator_on_a_string_field(spec: dict[str, Any], expected: bool) -> None:
    assert hit({"data.currency": spec}) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"$gt": 149}, True),
        ({"$gt": 150}, False),
        ({"$gte": 150}, True),
        ({"$gte": 150.5}, False),
        ({"$lt": 150.5}, True),
        ({"$lt": 150}, False),
        ({"$lte": 150}, True),
        ({"$lte": 149.99}, False),
        ({"$gte": 100, "$lt": 200}, True),  # every operator must hold
        ({"$gte": 100, "$lt": 120}, False),
        ({"$gt": "100"}, False),
        ({"$eq": 150.0}, True),
        ({"$in": [True, 150]}, True),
        ({"$in": [True, "150"]}, False),
        ({"$prefix": "1"}, False),  # string operators need a string field
        ({"$contains": 1}, False),
    ],
)
def test_each_operator_on_a_number_field(spec: dict[str, Any], expected: bool) -> None:
    assert hit({"data.amount": spec}) is expected


def test_a_boolean_is_never_ordered_against_a_number() -> None:
    assert not hit({"data.paid": {"$gte": 0}})
    assert hit({"data.paid": {"$ne": 1}})
    assert not hit({"data.paid": {"$in": [1, 0]}})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"$contains": "eu"}, True),
        ({"$contains": 7}, True),
        ({"$contains": 7.0}, True),
        ({"$contains": "e"}, False),  # an element, not a substring of one
        ({"$in": ["us", "eu"]}, True),
        ({"$nin": ["us", "eu"]}, False),
        ({"$ne": "vip"}, False),
        ({"$ne": "us"}, True),
        ({"$eq": ["vip", "eu", 7]}, True),
        ({"$eq": ["eu", "vip", 7]}, False),
        ({"$gt": 1}, False),  # ordering does not look inside arrays
    ],
)
def test_each_operator_on_an_array_field(spec: dict[str, Any], expected: bool) -> None:
    assert hit({"data.tags": spec}) is expected


def test_an_object_is_compared_with_eq() -> None:
    assert hit({"data.customer": {"$eq": {"country": "FR", "email": "ana@example.com"}}})
    assert not hit({"data.customer": {"$eq": {"country": "FR"}}})
    assert hit({"data.items": {"$contains": {"sku": "A-1"}}})


@pytest.mark.parametrize(
    "condition",
    [
        "x",
        {"$eq": None},
        {"$ne": "x"},
        {"$in": ["x"]},
        {"$nin": ["x"]},
        {"$gt": 0},
        {"$gte": 0},
        {"$lt": 0},
        {"$lte": 0},
        {"$prefix": ""},
        {"$suffix": ""},
        {"$contains": ""},
        {"$exists": True},
    ],
)
def test_a_missing_path_never_matches(condition: Any) -> None:
    for path in ("data.missing", "data.currency.deeper", "data.items.9", "data.items.x"):
        assert not hit({path: condition})


def test_only_exists_false_matches_a_missing_path() -> None:
    assert hit({"data.missing": {"$exists": False}})
    assert not hit({"data.missing": {"$exists": False, "$ne": 1}})
    assert hit({"data.note": {"$exists": True}})  # null is present
    assert not hit({"data.note": {"$exists": False}})


def test_not_negates_a_whole_filter_so_a_missing_path_matches_under_it() -> None:
    assert hit({"$not": {"data.missing": 1}})
    assert not hit({"data.missing": {"$ne": 1}})
    assert not hit({"$not": {"data.currency": "usd"}})


def test_and_or_and_the_keys_of_a_filter() -> None:
    assert hit({"data.currency": "usd", "data.amount": {"$gte": 100}})
    assert not hit({"data.currency": "usd", "data.amount": {"$gte": 1000}})
    assert hit({"$or": [{"data.currency": "eur"}, {"data.amount": {"$gt": 100}}]})
    assert not hit({"$or": [{"data.currency": "eur"}, {"data.amount": {"$gt": 1000}}]})
    assert hit({"$and": [{"data.currency": "usd"}, {"$not": {"data.paid": False}}]})
    assert hit({})


def test_the_issue_example_matches_as_described() -> None:
    spec = {"data.amount": {"$gte": 100}, "data.currency": {"$in": ["usd", "eur"]}}
    assert hit(spec, {"amount": 100, "currency": "eur"})
    assert not hit(spec, {"amount": 99.99, "currency": "eur"})
    assert not hit(spec, {"amount": 100, "currency": "gbp"})
    assert not hit(spec, {"currency": "usd"})


def test_a_payload_that_is_not_an_object_has_no_paths_below_data() -> None:
    assert not hit({"data.x": 1}, [1, 2])
    assert hit({"data.0": 1}, [1, 2])


def test_a_valid_filter_has_no_problems() -> None:
    assert validate({"data.amount": {"$gte": 100}, "$or": [{"type": "a"}, {"type": "b"}]}) == []


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ([], "", "JSON object"),
        ({"data.x": {"$regex": "a+"}}, "data.x.$regex", "unknown operator $regex"),
        ({"data.x": {"country": "FR"}}, "data.x.country", "unknown operator"),
        ({"$nor": []}, "$nor", "unknown operator $nor"),
        ({"payload.x": 1}, "payload.x", "starting at"),
        ({"data..x": 1}, "data..x", "dot-separated"),
        ({"data.": 1}, "data.", "dot-separated"),
        ({"$and": {"data.x": 1}}, "$and", "non-empty list"),
        ({"$or": []}, "$or", "non-empty list"),
        ({"$or": [{"data.x": 1}, 5]}, "$or.1", "JSON object"),
        ({"$not": [{"data.x": 1}]}, "$not", "JSON object"),
        ({"data.x": {}}, "data.x", "at least one operator"),
        ({"data.x": {"$gt": True}}, "data.x.$gt", "number or a string"),
        ({"data.x": {"$lte": None}}, "data.x.$lte", "number or a string"),
        ({"data.x": {"$in": "usd"}}, "data.x.$in", "takes a list"),
        ({"data.x": {"$nin": {"a": 1}}}, "data.x.$nin", "takes a list"),
        ({"data.x": {"$exists": 1}}, "data.x.$exists", "true or false"),
        ({"data.x": {"$prefix": 1}}, "data.x.$prefix", "a string"),
        ({"data.x": {"$suffix": ["a"]}}, "data.x.$suffix", "a string"),
        ({"data.x": {"$not": {"$eq": 1}}}, "data.x.$not", "unknown operator $not"),
    ],
)
def test_a_bad_filter_is_refused_naming_the_path_inside_it(
    spec: Any, path: str, words: str
) -> None:
    [problem] = validate(spec)
    assert problem.path == path
    assert words in problem.message


def test_every_problem_is_listed() -> None:
    problems = validate({"data.a": {"$foo": 1}, "$or": [{"x": 1}], "data.b": {"$in": 3}})
    assert [p.path for p in problems] == ["data.a.$foo", "$or.0.x", "data.b.$in"]


def nested(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"data.x": 1}
    for _ in range(levels - 1):
        spec = {"$not": spec}
    return spec


def test_eight_levels_are_accepted_and_nine_refused() -> None:
    assert validate(nested(MAX_LEVELS)) == []
    [problem] = validate(nested(MAX_LEVELS + 1))
    assert problem.path == ".".join(["$not"] * MAX_LEVELS)
    assert "deeper than 8 levels" in problem.message


def test_nesting_inside_an_operand_counts_as_levels() -> None:
    deep: Any = 1
    for _ in range(MAX_LEVELS - 1):
        deep = [deep]
    assert validate({"data.x": {"$eq": deep}}) == []
    [problem] = validate({"data.x": {"$eq": [deep]}})
    assert problem.path.startswith("data.x.$eq.0.0")


def test_sixty_four_nodes_are_accepted_and_more_refused() -> None:
    # The filter, the condition, the operator, the list: 4 nodes, then one per element.
    assert validate({"data.x": {"$in": list(range(MAX_NODES - 4))}}) == []
    [problem] = validate({"data.x": {"$in": list(range(MAX_NODES - 3))}})
    assert problem == FilterProblem("", f"has {MAX_NODES + 1} nodes; at most {MAX_NODES}")


def test_a_huge_filter_is_refused_without_walking_it_all_deep() -> None:
    deep: Any = {"data.x": 1}
    for _ in range(5000):
        deep = {"$not": deep}
    problems = validate(deep)
    assert any("deeper" in p.message for p in problems)


def test_check_names_the_first_problem_under_filter() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check({"data.amount": {"$gte": "a", "$foo": 1}})
    assert caught.value.field == "filter.data.amount.$foo"
    with pytest.raises(InvalidInputError) as caught:
        check(5)
    assert caught.value.field == "filter"


def test_compiling_refuses_what_validate_refuses() -> None:
    with pytest.raises(InvalidInputError):
        compile_filter({"data.x": {"$regex": "."}})
