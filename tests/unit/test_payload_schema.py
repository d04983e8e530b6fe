"""`engine.events.payload_schema`: schemas checked when saved, local references only, pointers."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from engine.errors import InvalidInputError
from engine.events.payload_schema import (
    MAX_VIOLATIONS,
    TOO_DEEP,
    Violation,
    check_schema,
    compile_schema,
    failed,
    pointer,
    violations,
)


def refused(schema: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        check_schema(schema)
    return caught.value


@pytest.mark.parametrize(
    "schema",
    [
        {},
        True,
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {}}},
        {"$defs": {"a": {"$anchor": "here"}}, "$ref": "#here"},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#"},
        {"$id": "https://example.com/s", "$defs": {"a": {}}, "$ref": "#/$defs/a"},
        {"properties": {"$ref": {"type": "string"}}},
        {"enum": [{"$ref": "https://not.a.reference/since/it/is/data"}]},
    ],
)
def test_usable_schemas_are_accepted(schema: Any) -> None:
    check_schema(schema)


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "nope"}, "schema.type"),
        ({"properties": {"a": {"minimum": "ten"}}}, "schema.properties.a.minimum"),
        ([], "schema"),
        ("string", "schema"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "schema.$schema"),
    ],
)
def test_an_invalid_schema_is_refused_naming_where(schema: Any, field: str) -> None:
    assert refused(schema).field == field


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"$ref": "https://example.com/s.json"}, "schema.$ref"),
        ({"properties": {"a": {"$ref": "other.json"}}}, "schema.properties.a.$ref"),
        ({"$defs": {"x": {"$ref": "//host/x#/y"}}}, "schema.$defs.x.$ref"),
        ({"items": {"$dynamicRef": "urn:remote"}}, "schema.items.$dynamicRef"),
        ({"anyOf": [{}, {"$ref": "file:///etc/passwd"}]}, "schema.anyOf.1.$ref"),
    ],
)
def test_a_remote_reference_is_refused(schema: Any, field: str) -> None:
    error = refused(schema)

    assert error.field == field
    assert "local" in error.message


def test_a_local_reference_to_nothing_is_refused() -> None:
    assert refused({"$ref": "#/$defs/missing"}).field == "schema.$ref"


def test_validation_never_opens_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a schema tried to connect")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    # A nested `$id` skips the save-time resolution check; compiling still fetches nothing.
    schema = {"properties": {"a": {"$id": "https://e.com/x", "$ref": "y.json"}}}

    with pytest.raises(ValueError, match="Retrieval is disabled"):
        compile_schema(schema)
    assert refused(schema).field == "schema.properties.a.$ref"


def test_a_pattern_that_would_backtrack_is_refused_when_saved() -> None:
    error = refused({"properties": {"a": {"pattern": "^(a+)+(?=b)$"}}})

    assert error.field == "schema"
    assert "regex" in error.message


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([], ""),
        (["a", 0, "b"], "/a/0/b"),
        (["a/b"], "/a~1b"),
        (["m~n"], "/m~0n"),
        (["~/"], "/~0~1"),
        ([""], "/"),
    ],
)
def test_pointers_follow_rfc_6901(path: list[str | int], expected: str) -> None:
    assert pointer(path) == expected


def test_every_violation_is_listed_with_its_pointer() -> None:
    schema = {
        "type": "object",
        "required": ["id"],
        "properties": {
            "amount": {"type": "integer"},
            "a/b": {"type": "string"},
            "lines": {"type": "array", "items": {"required": ["sku"]}},
        },
    }
    payload = {"amount": "1", "a/b": 2, "lines": [{"sku": 1}, {}]}

    found = violations(compile_schema(schema), payload)

    assert [v.pointer for v in found] == ["", "/a~1b", "/amount", "/lines/1"]
    assert found[0].message == '"id" is a required property'


def test_violations_stop_at_the_limit() -> None:
    validator = compile_schema({"additionalProperties": False})

    found = violations(validator, {f"k{i}": i for i in range(MAX_VIOLATIONS + 30)})

    assert len(found) == 1  # one error names every extra key
    many = compile_schema({"additionalProperties": {"type": "string"}})
    assert len(violations(many, {f"k{i}": i for i in range(80)})) == MAX_VIOLATIONS


def test_a_valid_payload_has_no_violations() -> None:
    assert violations(compile_schema({"type": "object"}), {"a": 1}) == []


def test_a_payload_as_deep_as_json_parses_meets_a_recursive_schema_without_a_crash() -> None:
    validator = compile_schema({"properties": {"a": {"$ref": "#", "required": ["b"]}}})
    payload: dict[str, Any] = {"b": 1}
    for _ in range(2000):  # json.loads stops at about 1,000 levels
        payload = {"a": payload, "b": 1}

    assert validator.is_valid(payload)
    assert violations(validator, {"a": {"a": {}}}) == [
        Violation("/a", '"b" is a required property'),
        Violation("/a/a", '"b" is a required property'),
    ]


def test_a_validator_that_fails_says_so_as_a_violation() -> None:
    class Broken:
        def iter_errors(self, payload: Any) -> Any:
            raise ValueError("Recursion limit reached")

    assert violations(Broken(), {}) == [Violation("", TOO_DEEP)]  # type: ignore[arg-type]


def test_a_rust_panic_is_a_failure_to_report_and_a_stop_is_not() -> None:
    panic = type("PanicException", (BaseException,), {})

    assert failed(panic("boom")) and failed(ValueError("bad"))
    assert not failed(KeyboardInterrupt()) and not failed(SystemExit(0))
