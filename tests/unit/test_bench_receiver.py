"""The benchmark's receiver answers real HTTP/1.1 clients on 127.0.0.1: fast, hanging, control."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ports() -> Iterator[list[int]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "ops.bench.receiver", "--listeners", "2", "--max-lifetime-s", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield json.loads(child.stdout.readline())["ports"]
    finally:
        child.terminate()
        child.wait(10)


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read(), response


def stats(port: int) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return json.loads(call(conn, "GET", "/_stats")[1])  # type: ignore[no-any-return]
    finally:
        conn.close()


def test_posts_are_answered_at_once_on_one_kept_connection_and_counted(ports: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    answers = [call(conn, "POST", f"/ok/{n}", b'{"n": %d}' % n)[:2] for n in range(3)]
    sock = conn.sock
    answers.append(call(conn, "POST", "/ok/3?x=1", b"x" * 70_000)[:2])

    assert answers == [(200, b"ok")] * 4
    assert conn.sock is sock, "the same connection throughout"
    assert stats(ports[1]) == {"counts": {"ok": 4}, "hanging": 0, "ticks": {}}, (
        "counts are shared by ports"
    )


def test_slow_paths_answer_after_their_delay_many_at_once(ports: list[int]) -> None:
    answered: list[float] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
        started = time.monotonic()
        assert call(conn, "POST", "/slow/200/a", b"{}")[:2] == (200, b"ok")
        answered.append(time.monotonic() - started)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(20)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answered) == 20 and min(answered) >= 0.2
    assert time.monotonic() - started < 2.0, "twenty 200 ms answers at once, not one by one"
    assert stats(ports[0])["counts"] == {"slow": 20}


def test_tick_paths_are_counted_per_name_and_second(ports: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    before = int(time.time())
    for n in range(3):
        assert call(conn, "POST", f"/tick/rl-{n % 2}/x", b"{}")[0] == 200
    after = int(time.time())

    ticks = stats(ports[0])["ticks"]

    assert isinstance(ticks, dict) and set(ticks) == {"rl-0", "rl-1"}
    assert sum(ticks["rl-0"].values()) == 2 and sum(ticks["rl-1"].values()) == 1
    assert all(before <= int(second) <= after for second in ticks["rl-0"])
    conn.close()


def wait_hanging(port: int, count: int) -> None:
    """Wait (up to 2 s) until the receiver holds `count` hanging requests."""
    for _ in range(200):
        if stats(port)["hanging"] == count:
            return
        time.sleep(0.01)


def test_a_hanging_request_waits_for_release(ports: list[int]) -> None:
    got: list[tuple[int, bytes, float]] = []

    def hang() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=20)
        started = time.monotonic()
        status, body, _ = call(conn, "POST", "/hang/0", b"{}")
        got.append((status, body, time.monotonic() - started))
        conn.close()

    waiting = threading.Thread(target=hang)
    waiting.start()
    wait_hanging(ports[1], 1)
    assert stats(ports[1])["hanging"] == 1
    time.sleep(0.2)
    assert got == []

    conn = http.client.HTTPConnection("127.0.0.1", ports[1], timeout=10)
    status, body, _ = call(conn, "GET", "/_release")
    waiting.join(10)

    assert (status, json.loads(body)) == (200, {"released": 1})
    assert got and got[0][:2] == (200, b"ok") and got[0][2] >= 0.2
    assert stats(ports[1])["hanging"] == 0
    started = time.monotonic()
    assert call(conn, "POST", "/hang/1", b"{}")[:2] == (200, b"ok"), "released until re-armed"
    assert time.monotonic() - started < 5
    assert call(conn, "GET", "/_arm")[0] == 200
    waiting = threading.Thread(target=hang)
    waiting.start()
    wait_hanging(ports[1], 1)
    assert stats(ports[1])["hanging"] == 1, "armed again"
    call(conn, "GET", "/_release")
    waiting.join(10)


def test_connection_close_is_honoured(ports: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    conn.request("POST", "/ok/1", body=b"{}", headers={"Connection": "close"})
    response = conn.getresponse()

    assert (response.status, response.read()) == (200, b"ok")
    assert response.getheader("Connection") == "close"


def test_a_chunked_body_is_refused_not_misread(ports: list[int]) -> None:
    # The whole request leaves in one write: the receiver may answer and close as soon as it
    # reads the header, and a client still sending its body would then see a broken pipe.
    request = (
        b"POST /ok/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as sock:
        sock.sendall(request)
        status_line = sock.makefile("rb").readline()

    assert status_line.split()[1] == b"501"
