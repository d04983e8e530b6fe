"""Liveness and readiness of the API process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from engine.errors import UnavailableError


class Health:
    """`GET /healthz`: the process answers."""

    auth = None
    uses_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readiness:
    """`GET /readyz`: the database and the broker are reachable."""

    auth = None
    uses_database = False

    def __init__(self, database: Any, broker_check: Callable[[], None]) -> None:
        self.database = database
        self.broker_check = broker_check

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "database": self._check(self._ping_database),
            "broker": self._check(self.broker_check),
        }
        ready = all(value == "ok" for value in checks.values())
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        if not ready:
            resp.set_header("Retry-After", "5")
        resp.media = {"status": "ok" if ready else "unavailable", "checks": checks}

    def _ping_database(self) -> None:
        with self.database.connection_context():
            self.database.execute_sql("SELECT 1")

    @staticmethod
    def _check(probe: Callable[[], None]) -> str:
        try:
            probe()
        except UnavailableError as exc:  # named for the driver's error, which says more
            return f"error: {type(exc.__cause__ or exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - readiness reports, it never fails
            return f"error: {type(exc).__name__}"
        return "ok"
