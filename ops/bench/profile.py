"""Optional py-spy profiles of the real processes during a scenario, and their top frames.

`python -m ops.bench --profile DIR` records the API during the first ingest
run, the worker during the first end-to-end run and the scheduler during the
first dispatch run (collapsed stacks, `DIR/<name>.txt`);
`python -m ops.bench.profile FILE` prints where the samples went.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


class Profiler:
    """Runs `py-spy record` against a process group leader and its children."""

    def __init__(self, py_spy: str, out_dir: Path, rate: int = 100) -> None:
        self.py_spy = py_spy
        self.out_dir = out_dir
        self.rate = rate
        self.done: set[str] = set()
        out_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def record(self, name: str, pid: int) -> Iterator[None]:
        """Sample `pid` and its subprocesses while the block runs (once per name)."""
        if name in self.done:
            yield
            return
        self.done.add(name)
        output = self.out_dir / f"{name}.txt"
        command = [self.py_spy, "record", "--pid", str(pid), "--subprocesses", "--nolineno"]
        # Only the thread holding the GIL: where Python spends CPU. Non-blocking: the
        # default pauses the process for every sample, which slows 100+ threads badly.
        command += ["--gil", "--nonblocking"]
        command += ["--rate", str(self.rate), "--format", "raw", "--output", str(output)]
        log = open(self.out_dir / f"{name}.py-spy.log", "wb")
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            log.close()
            (self.out_dir / f"{name}.summary.txt").write_text(summarise(output))


def _frames(stack: str) -> list[str]:
    """The frames of one collapsed stack, root first, without process and thread names."""
    return [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]


# (bucket, substrings of "function (file)"), tried from the leaf frame upwards.
BUCKETS = (
    ("peewee", ("(peewee.py)", "(playhouse/")),
    ("pika (AMQP client)", ("(pika/",)),
    ("dramatiq", ("(dramatiq/",)),
    ("aiohttp", ("(aiohttp/",)),
    ("asyncio", ("(asyncio/",)),
    ("logging (structlog)", ("(structlog/", "(logging/")),
    ("prometheus_client", ("(prometheus_client/",)),
    ("jsonschema", ("(jsonschema/", "(referencing/")),
    ("json", ("(json/",)),
    ("gunicorn", ("(gunicorn/",)),
    ("falcon", ("(falcon/",)),
    ("crypto and signing", ("(cryptography/", "(hmac.py)", "secretbox.py", "signing.py")),
    ("threading (locks, conditions)", ("(threading.py)", "(queue.py)")),
    ("selectors (I/O wait)", ("(selectors.py)",)),
    ("Hookline code", ("(engine/", "(actors/", "(api/")),
)
_OURS = ("(engine/", "(actors/", "(api/")


_COMPILING = ("__sql__", "Context.sql ", "Context.__call__", "_generate_insert", "Context.value")


def _bucket(frames: list[str]) -> str:
    for depth, frame in enumerate(reversed(frames)):
        for name, needles in BUCKETS:
            if any(needle in frame for needle in needles):
                return _peewee(frames[: len(frames) - depth]) if name == "peewee" else name
    return "other"


def _peewee(frames: list[str]) -> str:
    """Split peewee's time: building SQL text, or connecting, executing and committing."""
    for frame in reversed(frames):
        if "(peewee.py)" not in frame and "(playhouse/" not in frame:
            break
        if any(mark in frame for mark in _COMPILING):
            return "peewee: SQL compilation"
    return "peewee: connect, execute, commit (incl. waiting on PostgreSQL)"


def _ours(frames: list[str]) -> str:
    for frame in reversed(frames):
        if any(needle in frame for needle in _OURS):
            return frame
    return "(no Hookline frame: dramatiq, pika, asyncio, gunicorn machinery)"


def summarise(path: Path, top: int = 25) -> str:
    """Where the samples went: by library, by nearest Hookline function, by leaf frame."""
    if not path.exists():
        return f"{path}: no samples\n"
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = _frames(stack)
        if not frames or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        leaf[frames[-1]] += samples
        buckets[_bucket(frames)] += samples
        ours[_ours(frames)] += samples
    if not total:
        return f"{path}: no samples\n"

    def block(title: str, counter: Counter[str], n: int) -> list[str]:
        return ["", title] + [f"  {c / total:6.1%}  {k}" for k, c in counter.most_common(n)]

    lines = [f"{path.name}: {total} samples (the thread holding the GIL)"]
    lines += block("by library (the leaf-most frame that names one):", buckets, len(BUCKETS) + 1)
    lines += block("by the nearest Hookline function on the stack:", ours, top)
    lines += block("by leaf frame (self time):", leaf, top)
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print the summary of collapsed-stack files."""
    parser = argparse.ArgumentParser(prog="python -m ops.bench.profile")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
