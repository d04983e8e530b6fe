"""Transformations: the evaluation every delivery and preview share, and its bounds."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from actors import outcomes
from engine import retry
from engine.db.models import Delivery, Endpoint, Event
from engine.deliveries import record as deliveries
from engine.deliveries.client import Outcome
from engine.endpoints import transforms
from engine.endpoints.transforms import TransformError
from engine.errors import InvalidInputError

SLACK = "{text: join('', ['Invoice ', data.invoice, ' paid'])}"
LIMIT = 256 * 1024


def doc(**data: Any) -> dict[str, Any]:
    return {
        "type": "invoice.paid",
        "timestamp": "2026-12-02T12:00:00Z",
        "event_id": "evt_1",
        "data": data,
        "endpoint": {"id": "ep_1", "metadata": {"channel": "#billing"}},
    }


def render(expression: str, document: dict[str, Any], max_bytes: int = LIMIT) -> Any:
    return json.loads(transforms.render({"jmespath": expression}, document, max_bytes=max_bytes))


def test_a_slack_style_expression_makes_an_object_body() -> None:
    body = transforms.render({"jmespath": SLACK}, doc(invoice="INV-7"), max_bytes=LIMIT)

    assert body == b'{"text":"Invoice INV-7 paid"}'


def test_an_array_result_is_a_body_too() -> None:
    assert render("[type, data.n, endpoint.metadata.channel]", doc(n=3)) == [
        "invoice.paid",
        3,
        "#billing",
    ]


def test_the_body_is_compact_utf8_json() -> None:
    body = transforms.render({"jmespath": "{name: data.name}"}, doc(name="Zoë"), max_bytes=LIMIT)

    assert body == '{"name":"Zoë"}'.encode()


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("data.missing", "result is null"),
        ("data.invoice", "result is a string"),
        ("data.n", "result is a number"),
        ("`true`", "result is a boolean"),
        ("join('', [data.n])", "the expression failed: "),
        ("[to_number('1e999')]", "is not JSON"),
    ],
)
def test_a_result_that_cannot_be_a_body_is_a_transform_error_with_the_reason(
    expression: str, reason: str
) -> None:
    with pytest.raises(TransformError, match=reason):
        transforms.render({"jmespath": expression}, doc(invoice="INV-7", n=3), max_bytes=LIMIT)


def test_a_result_over_the_body_limit_is_a_transform_error() -> None:
    document = doc(text="x" * 600)

    assert render("[data.text]", document, max_bytes=1024) == ["x" * 600]
    with pytest.raises(TransformError, match="larger than 1024 bytes"):
        render("[data.text, data.text]", document, max_bytes=1024)


def test_a_result_just_over_the_limit_by_its_escapes_is_refused_too() -> None:
    # 500 control characters: 500 characters counted, 3,000 bytes once escaped.
    with pytest.raises(TransformError, match="larger than 1024 bytes"):
        render("[data.text]", doc(text="\x01" * 500), max_bytes=1024)


@pytest.mark.parametrize(
    "expression",
    [
        "[data, data]" + " | [@, @]" * 60,  # shared values, doubling
        "data.s" + " | join('', [@, @])" * 60,  # a string doubling
        "[data, data]" + " | [@, @][]" * 60,  # an array doubling
        "[data, data]" + " | [@, @]" * 60 + " | [to_string(@)]",  # serialising the doubles
        "[data, data]" + " | [@, @]" * 400,  # too deep to evaluate
    ],
)
def test_an_expression_that_blows_up_its_input_stops_early_as_a_transform_error(
    expression: str,
) -> None:
    with pytest.raises(TransformError):
        render(expression, doc(s="ab"))


def test_an_expression_is_compiled_once_per_process() -> None:
    expression = "{once: data.n}"
    before = transforms._compiled.cache_info().misses

    for n in range(3):
        assert render(expression, doc(n=n)) == {"once": n}

    assert transforms._compiled.cache_info().misses == before + 1


@pytest.mark.parametrize(
    ("transform", "field", "message"),
    [
        ({"jmespath": "data.("}, "transform", "does not compile"),
        ({"jmespath": "no_such(@)"}, "transform", "unknown function no_such()"),
        ({"jmespath": "[" + "é" * 2048 + "]"}, "transform", "longer than 4096 bytes"),
        ({"jmespath": "  "}, "transform.jmespath", "an expression is required"),
    ],
)
def test_saving_checks_that_the_expression_compiles_and_fits(
    transform: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        transforms.check(transform)

    assert caught.value.field == field
    assert message in caught.value.message


def test_saving_accepts_the_standard_functions_and_null() -> None:
    transforms.check({"jmespath": SLACK})
    transforms.check({"jmespath": "{n: length(data.items), top: max_by(data.items, &n)}"})
    transforms.check(None)


def test_the_input_document_holds_the_event_and_the_endpoint() -> None:
    event = Event(
        id="evt_1",
        tenant_id="t",
        event_type="invoice.paid",
        payload='{"invoice":"INV-7"}',
        created_at=dt.datetime(2026, 12, 2, 12, 0, 0, 250000),
    )
    endpoint = Endpoint(id="ep_1", metadata={"channel": "#billing"})

    document = transforms.document(event, endpoint)

    assert document == {
        "type": "invoice.paid",
        "timestamp": "2026-12-02T12:00:00.250000Z",
        "event_id": "evt_1",
        "data": {"invoice": "INV-7"},
        "endpoint": {"id": "ep_1", "metadata": {"channel": "#billing"}},
    }
    # The same timestamp as the standard envelope's.
    assert json.loads(deliveries.envelope(event))["timestamp"] == document["timestamp"]


def test_a_transform_error_is_quarantined_at_once_whatever_the_schedule_left() -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, 0)
    decision = retry.decide(
        success=False,
        status_code=None,
        attempts_made=1,
        schedule=(5, 300),
        first_attempt_at=now,
        now=now,
        max_age_s=86400,
        error_class="transform_error",
    )

    assert (decision.action, decision.reason) == ("quarantine", "transform_error")


def test_a_transform_error_is_kept_from_the_endpoints_breaker() -> None:
    reported: list[Any] = []

    class Reporter:
        def report(self, record: Any) -> None:
            reported.append(record)

    event = Event(id="evt_1", created_at=dt.datetime(2026, 12, 2, 12, 0, 0))
    delivery = Delivery(id="dlv_1", attempts=1)  # a real delivery, not a test event's
    claimed = deliveries.Claim(delivery, Endpoint(id="ep_1"), event)
    failed = Outcome(dt.datetime(2026, 12, 2, 12, 0, 1), 0.0, error_class="transform_error")
    http_failure = Outcome(dt.datetime(2026, 12, 2, 12, 0, 1), 3.0, status_code=500)
    quarantined = retry.Decision("quarantine", reason="transform_error")

    outcomes.report_attempt(Reporter(), claimed, failed, quarantined)  # type: ignore[arg-type]
    outcomes.report_attempt(Reporter(), claimed, http_failure, quarantined)  # type: ignore[arg-type]

    assert [record.status_code for record in reported] == [500]
