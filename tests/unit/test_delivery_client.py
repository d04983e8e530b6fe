"""`DeliveryClient.send` over real sockets to a server on 127.0.0.1: limits and timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.deliveries import slots
from engine.deliveries.client import ClientOptions, DeliveryClient, Outcome, Request, open_session
from engine.deliveries.hostgate import host_key
from engine.ssrf import AddressPolicy

Scenario = Callable[[DeliveryClient, str, dict[str, Any]], Awaitable[None]]


def run(
    scenario: Scenario, *, delay_s: float, answer: bytes = b"ok", **options: Any
) -> dict[str, Any]:
    """Serve on an ephemeral loopback port (each `answer` after `delay_s`), run `scenario`."""
    seen: dict[str, Any] = {"in_flight": 0, "most": 0, "served": 0}

    async def handle(request: web.Request) -> web.Response:
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        try:
            await request.read()
            await asyncio.sleep(delay_s)
            seen["served"] += 1
            return web.Response(body=answer, content_type="text/plain")
        finally:
            seen["in_flight"] -= 1

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client_options = ClientOptions(policy=AddressPolicy(allow_private=True), **options)
        client = DeliveryClient(open_session(client_options), client_options)
        try:
            await asyncio.wait_for(scenario(client, f"http://127.0.0.1:{port}/hook", seen), 30)
        finally:
            await client.session.close()
            await runner.cleanup()

    asyncio.run(main())
    return seen


def request(url: str) -> Request:
    return Request(url=url, headers={"content-type": "application/json"}, body=b"{}")


def test_an_attempt_queued_past_the_connect_timeout_still_succeeds() -> None:
    # One connection to the host, 0.1 s per answer: the eighth attempt waits about 0.7 s for
    # it, well past the 0.2 s connect timeout (which aiohttp alone charges that wait to).
    outcomes: list[Outcome] = []

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        outcomes.extend(await asyncio.gather(*(client.send(request(url)) for _ in range(8))))

    seen = run(
        scenario,
        delay_s=0.1,
        max_connections_per_host=1,
        connect_timeout_s=0.2,
        request_timeout_s=5.0,
    )

    assert [o.status_code for o in outcomes] == [200] * 8
    assert seen["most"] == 1


def test_the_request_timeout_counts_the_wait_for_a_connection() -> None:
    outcomes: list[Outcome] = []

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        outcomes.extend(await asyncio.gather(*(client.send(request(url)) for _ in range(3))))

    run(scenario, delay_s=0.4, max_connections_per_host=1, request_timeout_s=0.6)

    first, second, third = outcomes
    assert first.status_code == 200
    for late in (second, third):
        assert (late.status_code, late.error_class) == (None, "timeout")
        assert late.error_detail == "no answer within 0.6 s"
        assert 550 <= late.duration_ms < 2000


def test_many_attempts_to_one_host_never_exceed_its_limit_and_all_succeed() -> None:
    outcomes: list[Outcome] = []

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        outcomes.extend(await asyncio.gather(*(client.send(request(url)) for _ in range(300))))
        assert client.gates.holders(host_key(url)) == 0

    seen = run(scenario, delay_s=0.002, max_connections_per_host=4, request_timeout_s=10.0)

    assert [o.status_code for o in outcomes] == [200] * 300
    assert seen["most"] <= 4 and seen["served"] == 300


def test_a_nul_in_the_answer_is_stored_as_a_replacement_character() -> None:
    # PostgreSQL's text holds no NUL: one in a body failed the whole recording group.
    outcomes: list[Outcome] = []

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        outcomes.append(await client.send(request(url)))

    run(scenario, delay_s=0.0, answer=b"a\x00b\xff\x00")

    (answered,) = outcomes
    assert answered.status_code == 200
    assert answered.response_body == "a\ufffdb\ufffd\ufffd"


def slotted(url: str, slot_at: dt.datetime) -> Request:
    return dataclasses.replace(request(url), slot_at=slot_at)


def test_a_slotted_request_starts_at_its_slot_and_one_reached_too_late_is_not_sent() -> None:
    outcomes: list[Outcome] = []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    soon, past = now + dt.timedelta(seconds=0.3), now - dt.timedelta(seconds=0.5)

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        sends = [client.send(slotted(url, soon)), client.send(slotted(url, past))]
        outcomes.extend(await asyncio.gather(*sends, client.send(request(url))))

    seen = run(scenario, delay_s=0.0)

    on_time, late, unslotted = outcomes
    assert on_time.status_code == 200 and on_time.started_at >= soon, "not before its slot"
    assert (late.status_code, late.error_class) == (None, slots.MISSED), "not sent"
    assert unslotted.status_code == 200 and unslotted.started_at < soon, "no slot: at once"
    assert seen["served"] == 2


def test_a_slotted_request_goes_ahead_of_a_flood_to_the_same_host() -> None:
    # One connection, 20 ms an answer, 30 unslotted requests queued: the slotted one, due
    # 50 ms in, would wait about 0.6 s behind them and miss its slot; it goes next instead.
    outcomes: list[Outcome] = []

    async def scenario(client: DeliveryClient, url: str, seen: dict[str, Any]) -> None:
        due = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=0.05)
        flood = [client.send(request(url)) for _ in range(30)]
        outcomes.extend(await asyncio.gather(client.send(slotted(url, due)), *flood))

    run(scenario, delay_s=0.02, max_connections_per_host=1, request_timeout_s=10.0)

    first, *rest = outcomes
    assert first.status_code == 200, first.error_detail
    done = first.started_at + dt.timedelta(milliseconds=first.duration_ms)
    ahead = [o for o in rest if o.started_at + dt.timedelta(milliseconds=o.duration_ms) < done]
    assert len(ahead) <= 5, "only those already let in before its slot came"
    assert [o.status_code for o in rest] == [200] * 30
