"""The naive baseline: drain N pre-enqueued messages through `ops.bench.naive_worker`."""

from __future__ import annotations

import json
import sys
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from ops.bench import naive_worker, options
from ops.bench.context import Context, CpuMeter, wait_until
from ops.bench.services import purge_queues

BODY = json.dumps({"type": "bench.event", "data": {"n": 0, "pad": "x" * 256}})


def prepare(ctx: Context) -> None:
    """Create the baseline's table in the benchmark database."""
    ctx.pg.execute(
        f"CREATE TABLE IF NOT EXISTS {naive_worker.TABLE} ("
        " id BIGSERIAL PRIMARY KEY, url TEXT NOT NULL, status_code INTEGER NOT NULL,"
        " delivered_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
    )


def enqueue(ctx: Context, count: int) -> None:
    """Publish `count` messages spread over the receiver's endpoints."""
    broker = RabbitmqBroker(url=ctx.amqp_url, middleware=[])
    try:
        actor = naive_worker.declare(broker)
        ports = ctx.ports[: ctx.args.fanout] or ctx.ports
        for n in range(count):
            port = ports[n % len(ports)]
            actor.send(f"http://127.0.0.1:{port}/naive/{n % len(ports)}", BODY)
    finally:
        broker.close()


def one_run(ctx: Context, count: int, index: int) -> dict[str, Any]:
    """Pre-enqueue, start the naive worker, wait for every row; answer the drain rate."""
    ctx.pg.execute(f"TRUNCATE {naive_worker.TABLE}")
    enqueue(ctx, count)
    args = ctx.args
    name = f"naive-worker-{index}"
    ctx.processes.start(
        name,
        [
            "-m",
            "dramatiq",
            "ops.bench.naive_worker",
            "--processes",
            str(options.effective(args, "worker_processes")),
            "--threads",
            str(args.baseline_threads),
            "--skip-logging",
        ],
        env={"BENCH_AMQP_URL": ctx.amqp_url, "BENCH_PG_URL": ctx.pg_url, "BENCH_NAIVE_WORKER": "1"},
    )
    try:
        done, measured = _drain(ctx, name, count)
        first, last = ctx.pg.row(
            f"SELECT extract(epoch FROM min(delivered_at)), extract(epoch FROM max(delivered_at))"
            f" FROM {naive_worker.TABLE}"
        )
    finally:
        ctx.processes.stop(name)
        purge_queues(ctx.amqp_url, naive_worker.QUEUE, naive_worker.QUEUE + ".DQ")
    elapsed = max(float(last or 0) - float(first or 0), 1e-6)
    failures = ctx.processes.log_count(name, "Failed to process message")
    if failures:
        print(f"bench: the naive worker failed {failures} times (see its log)", file=sys.stderr)
    return {
        "failed_attempts": failures,
        "deliveries": done,
        "elapsed_s": elapsed,
        "deliveries_per_s": max(done - 1, 0) / elapsed,
        "client": naive_worker.CLIENT,
        **measured,
    }


def _drain(ctx: Context, name: str, count: int) -> tuple[int, dict[str, float]]:
    """Wait for `count` rows; answer them and the CPU per delivery once the worker was up."""

    def rows() -> int:
        if not ctx.processes.running(name):
            raise RuntimeError("the naive worker died:\n" + ctx.processes.tail(name))
        return int(ctx.pg.scalar(f"SELECT count(*) FROM {naive_worker.TABLE}"))

    cap = ctx.args.scenario_cap_s
    wait_until(lambda: rows() > 0, cap, 0.05)
    with CpuMeter(ctx, name) as cpu:
        before = rows()
        wait_until(lambda: rows() >= count, cap, 0.1)
        done = rows()
    per_unit = cpu.per_unit(done - before)
    return done, {k.replace(name, "naive_worker"): v for k, v in per_unit.items()}
