"""`engine.shortcuts.loop`: uvloop serves the API and sends attempts, and what that rests on.

Each case that installs a policy runs in a child process, so that this one keeps its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gunicorn.config
import gunicorn.glogging
import pytest

from api.server import Worker
from engine.shortcuts.loop import loop_name


def child(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


LOOP_OF_DRAMATIQ = """
import json, logging
from dramatiq.asyncio import EventLoopThread
from engine.shortcuts.loop import install_event_loop
installed = install_event_loop({wanted!r})
thread = EventLoopThread(logging.getLogger("test"))
print(json.dumps({{"installed": installed, "module": type(thread.loop).__module__}}))
"""


@pytest.mark.parametrize(("wanted", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_loop_dramatiq_makes_for_the_asyncio_middleware_is_the_one_installed(
    wanted: str, module: str
) -> None:
    result = child(LOOP_OF_DRAMATIQ.format(wanted=wanted))

    assert result["installed"] == wanted
    assert str(result["module"]).startswith(module)


ATTEMPTS_ON_UVLOOP = """
import asyncio, json
from aiohttp import web
from engine.deliveries.client import ClientOptions, DeliveryClient, Request, open_session
from engine.shortcuts.loop import install_event_loop
from engine.ssrf import AddressPolicy
install_event_loop("uvloop")

async def main():
    async def handle(request):
        await request.read()
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = "http://127.0.0.1:%d/hook" % runner.addresses[0][1]
    request = Request(url=url, headers={"content-type": "application/json"}, body=b"{}")
    results = {"loop": type(asyncio.get_running_loop()).__module__}
    # By name, so that the URL check passes it and the socket factory decides.
    by_name = Request(url=url.replace("127.0.0.1", "localhost"), headers={}, body=b"{}")
    cases = (
        ("allowed", AddressPolicy(allow_private=True), request),
        ("guarded", AddressPolicy(), by_name),
    )
    for name, policy, sent in cases:
        options = ClientOptions(policy=policy)
        client = DeliveryClient(open_session(options), options)
        outcome = await client.send(sent)
        results[name] = [outcome.status_code, outcome.error_class, outcome.response_body]
        await client.session.close()
    await runner.cleanup()
    print(json.dumps(results))

asyncio.run(main())
"""


def test_attempts_on_uvloop_are_sent_through_the_ssrf_guards_socket_factory() -> None:
    result = child(ATTEMPTS_ON_UVLOOP)

    assert str(result["loop"]).startswith("uvloop")
    assert result["allowed"] == [200, None, "ok"]
    # localhost is 127.0.0.1, not public: the guard's socket factory refuses it undialled.
    status, error_class, _body = result["guarded"]  # type: ignore[misc]
    assert (status, error_class) == (None, "refused_address")


@pytest.mark.parametrize("wanted", ["uvloop", "asyncio"])
def test_the_api_worker_serves_on_the_loop_the_setting_names(
    wanted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKLINE_EVENT_LOOP", wanted)
    config = gunicorn.config.Config()

    worker = Worker(0, os.getpid(), [], None, 30, config, gunicorn.glogging.Logger(config))

    assert worker.config.loop == wanted == loop_name(wanted)
    assert Worker.CONFIG_KWARGS["loop"] == "asyncio"  # the class's own is left alone
