"""The benchmark cannot rot: `python -m ops.bench --smoke` runs every scenario end to end.

Asserts only that each scenario reported positive numbers, never how fast they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.services import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.bench]

ROOT = Path(__file__).resolve().parents[2]
# The delivery scenarios that take turns with the naive baseline, each compared with it.
AGAINST_BASELINE = (
    "e2e_fanout_10",
    "e2e_fanout_2",
    "e2e_fanout_1",
    "e2e_shared_host",
    "e2e_transform",
    "drain",
)
SCENARIOS = (
    "ingest",
    "batch_ingest",
    "ingest_schema",
    "baseline",
    *AGAINST_BASELINE,
    "lag",
    "isolation",
    "backlog",
)
UNAVAILABLE = 3  # the benchmark's exit status when PostgreSQL or RabbitMQ is down
SMOKE_TIMEOUT_S = 16 * 60  # past the smoke's own 12-minute deadline and its teardown


def test_smoke_reports_every_scenario(tmp_path: Any) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "ops.bench", "--smoke", "--db-max-connections", "6"]
    try:
        # Small pools: the suite's own stacks share the server's 100 connections. About
        # 200 s on a quiet machine; CI runs it beside two passes of the suite.
        done = subprocess.run(
            [*command, "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        phases = [line for line in said.splitlines() if line.startswith("[")]
        pytest.fail(f"no report in {SMOKE_TIMEOUT_S} s; its phases:\n" + "\n".join(phases))
    if done.returncode == UNAVAILABLE:
        unavailable("PostgreSQL or RabbitMQ", done.stderr.strip()[-500:])
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    for scenario in SCENARIOS:
        summary = document["scenarios"][scenario]["summary"]
        assert summary, scenario
        for metric, values in summary.items():
            # CPU is counted in 10 ms ticks: a tiny run may spend none in a process.
            low = 0 if "cpu_" in metric else 1e-9
            assert values["median"] >= low, (scenario, metric, values)
            assert values["min"] <= values["median"] <= values["max"], (scenario, metric)
    for scenario in AGAINST_BASELINE:
        assert document["scenarios"][scenario]["ratio_to_baseline"] > 0, scenario
    assert document["scenarios"]["e2e_transform"]["ratio_to_plain"] > 0
    assert "Slack transform (" in done.stdout and " x without)" in done.stdout
    assert document["scenarios"]["isolation"]["ratio"] > 0
    noisy = document["scenarios"]["noisy_neighbour"]["summary"]
    assert noisy["b_p99_ms"]["median"] > 0 and noisy["a_requests_per_s"]["median"] > 0
    # Until flow control's endpoint fields land, these two report the API's refusal.
    for flow, metric in (("fifo", "deliveries_per_s"), ("throttled", "unthrottled_ratio")):
        found = document["scenarios"][flow]
        assert found.get("unavailable") or found["summary"][metric]["median"] > 0, flow
    retention = document["scenarios"]["retention"]["summary"]
    assert retention["drop_day_s"]["median"] > 0 and retention["dropped_rows"]["median"] > 0
    # The throttled scenario's two: the bound in every run, and the unthrottled endpoints' pace.
    throttled_targets = 2 * int("summary" in document["scenarios"]["throttled"])
    assert len(document["targets"]) == 17 + throttled_targets + 2  # + retention's two
    # Hookline runs at its defaults but for the one deviation asked for, which is reported.
    assert document["deviations"] == [
        {"setting": "HOOKLINE_DB_MAX_CONNECTIONS", "value": "6", "default": "16"}
    ]
    assert "DEVIATIONS FROM THE DEFAULTS: HOOKLINE_DB_MAX_CONNECTIONS=6" in done.stdout
    assert all(isinstance(target["met"], bool) for target in document["targets"])
    for field in ("nproc", "memory_gib", "cpu", "python", "postgresql", "rabbitmq"):
        assert document["machine"][field], field
    for field in ("speed_gauge_ms_at_start", "speed_gauge_ms_at_end"):
        assert document["machine"][field] > 0, field
    assert document["command"].startswith("python -m ops.bench --smoke")
    assert "| target |" in done.stdout
