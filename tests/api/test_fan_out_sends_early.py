"""The `fan_out` actor sends before its deliveries are committed, and records after.

Unless `HOOKLINE_EARLY_FIRST_ATTEMPTS` is off: then it commits, then sends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dramatiq.middleware import CurrentMessage

from actors import fan_out
from actors.pipeline import Pipeline
from actors.runtime import Runtime
from engine.db.models import Attempt, Delivery, EventFanOut, utcnow
from engine.db.models import Endpoint as EndpointRow
from engine.deliveries.client import Outcome, Request
from engine.settings import Settings
from tests.api.support import worker_runtime

Publish = Callable[..., dict[str, Any]]
CreateEndpoint = Callable[..., dict[str, Any]]


class Endpoint:
    """A stand-in for `DeliveryClient.send`: notes whether the transaction had committed."""

    def __init__(self) -> None:
        self.committed = threading.Event()
        self.reached = threading.Event()
        self.sent: list[tuple[str, bool]] = []

    async def send(self, request: Request) -> Outcome:
        self.sent.append((request.url, self.committed.is_set()))
        self.reached.set()
        return Outcome(utcnow(), 1.0, status_code=200)


def wait_for(probe: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.01)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def worker(
    sqlite_settings: Settings,
    sqlite_db: Any,
    loop: asyncio.AbstractEventLoop,
) -> Iterator[tuple[Endpoint, Pipeline, Runtime]]:
    """The actor's runtime in this process: a real pipeline, its loop, a fake endpoint."""
    endpoint = Endpoint()
    pipeline, rt = worker_runtime(sqlite_settings, sqlite_db, endpoint, loop)
    yield endpoint, pipeline, rt
    pipeline.drain(5.0)


def an_event(create_endpoint: CreateEndpoint, publish: Publish, endpoints: int) -> str:
    """A tenant with `endpoints` endpoints, and the id of one event for all of them."""
    for n in range(endpoints):
        create_endpoint(url=f"https://receiver.example.com/{n}")
    return str(publish()["id"])


def note_the_commit(
    endpoint: Endpoint, database: Any, monkeypatch: pytest.MonkeyPatch, wait_s: float
) -> None:
    """COMMIT first waits up to `wait_s` for an attempt to reach the endpoint, then notes it."""
    plain_commit = type(database).commit

    def commit(self: Any) -> None:
        endpoint.reached.wait(wait_s)
        plain_commit(self)
        endpoint.committed.set()

    monkeypatch.setattr(type(database), "commit", commit)


def test_attempts_start_before_the_commit_and_are_recorded_after_it(
    worker: tuple[Endpoint, Pipeline, Runtime],
    sqlite_db: Any,
    create_endpoint: CreateEndpoint,
    publish: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, pipeline, rt = worker
    event_id = an_event(create_endpoint, publish, 3)
    # Sending only after the commit would wait here in vain.
    note_the_commit(endpoint, sqlite_db, monkeypatch, wait_s=2.0)

    fan_out.fan_out(rt, event_id)

    assert len(endpoint.sent) == 3
    assert endpoint.sent[0][1] is False  # the first attempt left before COMMIT
    made = list(Delivery.select().where(Delivery.event_id == event_id))
    assert {d.status for d in made} == {"succeeded"}
    assert Attempt.select().where(Attempt.delivery_id.in_([d.id for d in made])).count() == 3
    assert pipeline.in_flight == 0


def test_a_failed_commit_records_none_of_the_attempts_it_sent(
    worker: tuple[Endpoint, Pipeline, Runtime],
    sqlite_db: Any,
    create_endpoint: CreateEndpoint,
    publish: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, pipeline, rt = worker
    event_id = an_event(create_endpoint, publish, 2)
    reported: list[str] = []  # successes settled before the write are lost with the rest
    monkeypatch.setattr(pipeline, "after_record", lambda c, o, d: reported.append(c.delivery.id))

    def commit(self: Any) -> None:
        endpoint.reached.wait(2.0)
        raise RuntimeError("the database went away at COMMIT")

    monkeypatch.setattr(type(sqlite_db), "commit", commit)
    with pytest.raises(RuntimeError, match="went away"):
        fan_out.fan_out(rt, event_id)  # dramatiq retries the message

    wait_for(lambda: pipeline.in_flight == 0)  # their answers came back, and were dropped
    assert len(endpoint.sent) == 2  # the endpoints may see this event again, same webhook-id
    assert Delivery.select().where(Delivery.event_id == event_id).count() == 0
    assert EventFanOut.get_or_none(EventFanOut.event_id == event_id)  # the retry fans it out
    pipeline.recorder.flush(5.0)  # whatever reached the recorder is recorded by now
    assert Attempt.select().count() == 0
    assert reported == [], "nothing reported for attempts whose rows were never committed"


class Redelivered:
    """A message RabbitMQ gives again: its last worker took it and never acknowledged it."""

    redelivered = True


@pytest.mark.parametrize("why", ["setting_off", "redelivered"])
def test_with_early_first_attempts_off_or_redelivered_nothing_is_sent_before_the_commit(
    worker: tuple[Endpoint, Pipeline, Runtime],
    sqlite_db: Any,
    create_endpoint: CreateEndpoint,
    publish: Publish,
    monkeypatch: pytest.MonkeyPatch,
    why: str,
) -> None:
    endpoint, pipeline, rt = worker
    if why == "setting_off":
        rt.settings = rt.settings.with_overrides(early_first_attempts=False)
    else:  # its last worker may have died in an early attempt: none this time
        monkeypatch.setattr(CurrentMessage, "get_current_message", lambda: Redelivered())
    event_id = an_event(create_endpoint, publish, 3)
    # An attempt sent early would arrive meanwhile.
    note_the_commit(endpoint, sqlite_db, monkeypatch, wait_s=0.5)

    fan_out.fan_out(rt, event_id)

    assert [committed for _url, committed in endpoint.sent] == [True, True, True]
    made = list(Delivery.select().where(Delivery.event_id == event_id))
    assert {d.status for d in made} == {"succeeded"}
    assert pipeline.in_flight == 0


class SlowEndpoint(Endpoint):
    """Answers `/slow` only after `release`, everything else at once; `/fail` with a 500."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def send(self, request: Request) -> Outcome:
        if request.url.endswith("/slow"):
            while not self.release.is_set():
                await asyncio.sleep(0.005)
        self.sent.append((request.url, self.committed.is_set()))
        status = 500 if request.url.endswith("/fail") else 200
        return Outcome(utcnow(), 1.0, status_code=status)


def test_successes_in_before_the_write_are_written_succeeded_in_the_fan_outs_transaction(
    worker: tuple[Endpoint, Pipeline, Runtime],
    create_endpoint: CreateEndpoint,
    publish: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fast, pipeline, rt = worker
    endpoint = SlowEndpoint()
    rt.client = endpoint  # type: ignore[assignment]
    for path in ("ok", "fail", "slow"):
        create_endpoint(url=f"https://receiver.example.com/{path}")
    event_id = str(publish()["id"])
    recorded: list[str] = []
    put = pipeline.recorder.put
    monkeypatch.setattr(
        pipeline.recorder,
        "put",
        lambda claimed, outcome, batch: (
            recorded.append(claimed.endpoint.url) or put(claimed, outcome, batch)
        ),
    )
    reported: list[tuple[str, str]] = []
    monkeypatch.setattr(
        pipeline, "after_record", lambda c, o, d: reported.append((c.endpoint.url, d.action))
    )
    threading.Timer(0.3, endpoint.release.set).start()  # long after the settle wait

    fan_out.fan_out(rt, event_id)
    pipeline.recorder.flush(5.0)

    urls = {e.id: e.url for e in EndpointRow.select()}
    by_url = {
        urls[d.endpoint_id].rsplit("/", 1)[1]: d
        for d in Delivery.select().where(Delivery.event_id == event_id)
    }
    assert by_url["ok"].status == "succeeded"
    assert by_url["ok"].attempts == 1 and by_url["ok"].last_status_code == 200
    assert by_url["ok"].lease_until is None and by_url["ok"].last_attempt_at is not None
    # Only the failure and the slow answer went through the recorder: the success was
    # written, already succeeded, with its attempt, by the fan-out itself.
    assert sorted(url.rsplit("/", 1)[1] for url in recorded) == ["fail", "slow"]
    assert ("https://receiver.example.com/ok", "succeed") in reported
    assert by_url["fail"].status == "scheduled"
    assert by_url["slow"].status == "succeeded"
    numbers = [
        (a.delivery_id, a.number)
        for a in Attempt.select().where(Attempt.delivery_id.in_([d.id for d in by_url.values()]))
    ]
    assert sorted(n for _, n in numbers) == [1, 1, 1], "one attempt row each"
    assert pipeline.in_flight == 0
