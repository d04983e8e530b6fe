"""`api.json_depth`: how deep a body nests, read from its bytes when Python cannot parse it."""

from __future__ import annotations

import json
import random
from typing import Any

from api.json_depth import deep_path, too_deep


def nested(levels: int, key: str = "a") -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {key: value}
    return value


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def test_the_path_names_keys_and_indexes_down_to_the_first_container_too_deep() -> None:
    body = {"event_type": "x", "list": [0, {"k": [[[]]]}], "payload": nested(5)}
    raw = json.dumps(body).encode()

    assert deep_path(raw, 4) == ["list", "1", "k", "0"]
    assert deep_path(raw, 5) == ["list", "1", "k", "0", "0"]
    assert deep_path(raw, 6) is None
    assert deep_path(json.dumps({"payload": nested(5)}).encode(), 5) == ["payload"] + ["a"] * 4


def test_strings_with_brackets_commas_quotes_and_escapes_are_text() -> None:
    body = {'we"ird,{[': '[[[{{{,,,\\"]]', "k\u00e9y": {"x": "}}}"}, "z": [1, "]", {}]}
    raw = json.dumps(body, ensure_ascii=False).encode()

    assert deep_path(raw, 1) == ["k\u00e9y"]
    assert deep_path(raw, 2) == ["z", "2"]
    assert deep_path(raw, 3) is None


def test_a_batch_item_is_named_by_its_index() -> None:
    batch = {"events": [{"payload": {}}, {"payload": nested(3)}]}
    path = deep_path(json.dumps(batch).encode(), 3 + 2)

    assert path is not None and path[:3] == ["events", "1", "payload"]


def test_the_bytes_and_the_parsed_document_agree_on_random_documents() -> None:
    rng = random.Random(7)

    def grow(levels: int) -> Any:
        if levels == 0:
            return rng.choice([1, "s,]}", None, "{[\\"])
        if rng.random() < 0.5:
            return {f"k{i}": grow(rng.randrange(levels)) for i in range(rng.randrange(1, 3))}
        return [grow(rng.randrange(levels)) for _ in range(rng.randrange(1, 3))]

    for _ in range(300):
        document = {"f": grow(rng.randrange(1, 9)), "g": grow(rng.randrange(1, 9))}
        raw = json.dumps(document).encode()
        text = raw.decode()
        for limit in range(1, 10):
            over = max(depth(v) for v in document.values()) > limit
            assert (deep_path(raw, limit + 1) is not None) == over, (raw, limit)
            assert (too_deep(document, text, limit) is not None) == over, (raw, limit)
