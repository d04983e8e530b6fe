"""`tox -e py`'s two passes, side by side: every test on classic queues, and at the same time
the integration tests that touch RabbitMQ on quorum queues.

The quorum pass is mostly waiting (kills, leases, outages), so it runs in the classic
pass's idle time instead of after it: run one after the other they took some 18 of CI's
20 minutes. Each pass makes its own databases and vhosts. The quorum pass's output is
printed once it ends, after the classic pass's; the exit status is non-zero if either
failed. Arguments are passed to both (`tox -e py -- tests/integration/test_retries.py`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

QUORUM = "integration and not without_rabbitmq and not own_queue_types and not bench"
NO_TESTS = 5  # pytest's exit status when a narrowed run selects nothing


def main(args: list[str]) -> int:
    # The slowest tests are printed, so that a run nearing CI's 20 minutes shows where they went.
    pytest = [sys.executable, "-m", "pytest", "--dist", "worksteal", "--durations", "15"]
    classic = [*pytest, "-n", "3", *args]
    quorum = [*pytest, "-n", "2", "-m", QUORUM, "--queue-type", "quorum", *args]
    with tempfile.TemporaryFile() as output:
        second = subprocess.Popen(quorum, stdout=output, stderr=subprocess.STDOUT)
        first = subprocess.call(classic)
        last = second.wait()
        output.seek(0)
        sys.stdout.write("\n== the same on quorum queues: " + " ".join(quorum[2:]) + "\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(output.read())
    return 0 if first == 0 and last in (0, NO_TESTS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
