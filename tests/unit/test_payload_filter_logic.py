"""Payload filters behave as logic does: properties over generated filters and documents."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.endpoints.payload_filter import build_matcher, document, validate
from engine.endpoints.payload_operators import json_equal

# A few paths and values, so generated filters often meet generated payloads.
PATHS = ["data.a", "data.b", "data.a.b", "data.list", "data.list.0", "type"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5, -1.5]),
    st.sampled_from(["", "x", "xy", "yx", "ping"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("ab"), inner, max_size=2)
    ),
    max_leaves=5,
)
payloads = st.dictionaries(st.sampled_from(["a", "b", "list"]), values, max_size=3)
event_types = st.sampled_from(["ping", "x", "order.paid"])

orderable = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, "x", "xy", ""]))
operator = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne", "$contains"]), scalars),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), orderable),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, max_size=3)),
    st.tuples(st.just("$exists"), st.booleans()),
    st.tuples(st.sampled_from(["$prefix", "$suffix"]), st.sampled_from(["", "x", "y", "pi"])),
)
conditions = st.one_of(
    scalars,
    st.lists(operator, min_size=1, max_size=2).map(dict),
)
leaves = st.dictionaries(st.sampled_from(PATHS), conditions, min_size=1, max_size=2)


def _compose(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda f: {"$not": f}, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
    )


filters = st.recursive(leaves, _compose, max_leaves=4)
documents = st.builds(document, event_types, payloads)


def match(spec: dict[str, Any], doc: dict[str, Any]) -> bool:
    # Combinations may pass the saved-filter bounds: the logic is what is tested here.
    return build_matcher(spec)(doc)


@settings(max_examples=150)
@given(filters)
def test_every_generated_filter_has_a_valid_shape(spec: dict[str, Any]) -> None:
    problems = validate(spec)
    assert all("nodes" in p.message or "deeper" in p.message for p in problems), problems


@settings(max_examples=150)
@given(filters, documents)
def test_not_negates(spec: dict[str, Any], doc: dict[str, Any]) -> None:
    assert match({"$not": spec}, doc) is not match(spec, doc)
    assert match({"$not": {"$not": spec}}, doc) is match(spec, doc)


@settings(max_examples=150)
@given(filters, filters, documents)
def test_and_or_are_conjunction_and_disjunction(
    f: dict[str, Any], g: dict[str, Any], doc: dict[str, Any]
) -> None:
    assert match({"$and": [f, g]}, doc) is (match(f, doc) and match(g, doc))
    assert match({"$or": [f, g]}, doc) is (match(f, doc) or match(g, doc))
    assert match({"$and": [f, g]}, doc) is match({"$and": [g, f]}, doc)
    assert match({"$or": [f, g]}, doc) is match({"$or": [g, f]}, doc)


@settings(max_examples=150)
@given(filters, filters, documents)
def test_de_morgan(f: dict[str, Any], g: dict[str, Any], doc: dict[str, Any]) -> None:
    assert match({"$not": {"$or": [f, g]}}, doc) is match({"$and": [{"$not": f}, {"$not": g}]}, doc)
    assert match({"$not": {"$and": [f, g]}}, doc) is match({"$or": [{"$not": f}, {"$not": g}]}, doc)


@settings(max_examples=100)
@given(filters, documents)
def test_a_filter_with_itself_is_itself(spec: dict[str, Any], doc: dict[str, Any]) -> None:
    assert match({"$and": [spec, spec]}, doc) is match(spec, doc)
    assert match({"$or": [spec, spec]}, doc) is match(spec, doc)
    assert match({"$or": [spec, {"$not": spec}]}, doc)  # excluded middle
    assert not match({"$and": [spec, {"$not": spec}]}, doc)


@settings(max_examples=100)
@given(filters, filters, filters, documents)
def test_and_distributes_over_or(
    f: dict[str, Any], g: dict[str, Any], h: dict[str, Any], doc: dict[str, Any]
) -> None:
    assert match({"$and": [f, {"$or": [g, h]}]}, doc) is match(
        {"$or": [{"$and": [f, g]}, {"$and": [f, h]}]}, doc
    )


@settings(max_examples=150)
@given(leaves, documents)
def test_the_keys_of_a_filter_are_a_conjunction(spec: dict[str, Any], doc: dict[str, Any]) -> None:
    assert match(spec, doc) is all(match({key: value}, doc) for key, value in spec.items())


@settings(max_examples=150)
@given(st.sampled_from(PATHS), scalars, st.lists(scalars, max_size=3), documents)
def test_the_negated_operators_are_the_negation_where_the_path_exists(
    path: str, value: Any, options: list[Any], doc: dict[str, Any]
) -> None:
    present = match({path: {"$exists": True}}, doc)
    assert match({path: {"$ne": value}}, doc) is (present and not match({path: value}, doc))
    assert match({path: {"$nin": options}}, doc) is (
        present and not match({path: {"$in": options}}, doc)
    )
    assert match({path: {"$exists": False}}, doc) is not present


@settings(max_examples=150)
@given(values, values)
def test_json_equality_never_equates_a_boolean_with_a_number(a: Any, b: Any) -> None:
    if json_equal(a, b):
        assert type(a) is bool or type(b) is not bool
        assert type(b) is bool or type(a) is not bool
    assert json_equal(a, a)
