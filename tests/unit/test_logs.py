"""Every process's log lines: one JSON object each, pika's lost connections as warnings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from engine import logs


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """Logging configured as a process does; what its handler writes."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("info", "json")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], root.level = handlers, level


def test_pikas_lost_connections_are_warnings_and_everyone_elses_errors_stay_errors(
    written: io.StringIO,
) -> None:
    logging.getLogger("pika.adapters.blocking_connection").error(
        "Unexpected connection close detected: StreamLostError"
    )
    logging.getLogger("dramatiq.worker").error("an error of dramatiq's")
    logging.getLogger("hookline.delivery").error("one of Hookline's")

    lines = [json.loads(line) for line in written.getvalue().splitlines()]

    assert [(line["logger"], line["level"]) for line in lines] == [
        ("pika.adapters.blocking_connection", "warning"),
        ("dramatiq.worker", "error"),
        ("hookline.delivery", "error"),
    ]
