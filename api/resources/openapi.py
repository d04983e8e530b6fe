"""The OpenAPI document, served as it is kept in `schemas/`."""

from __future__ import annotations

import falcon

import schemas


class OpenApi:
    """`GET /openapi.json`: the document kept in `schemas/`."""

    auth = None
    uses_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = schemas.openapi()
