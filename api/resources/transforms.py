"""`/v1/transforms/preview`: the body an endpoint's transform makes of a sample event."""

from __future__ import annotations

import falcon

from api.errors import Problem
from api.resources import principal
from api.validation import read_json
from engine.endpoints.preview import preview
from engine.endpoints.transforms import ERROR_CLASS, TransformError
from engine.settings import Settings


class Transforms:
    """Previews (`on_post_preview`); reading an endpoint's id and metadata needs no more."""

    scopes = {"POST": "endpoints:read"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_post_preview(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, "transform_preview", self.settings.max_body_bytes)
        event = body["event"]
        try:
            shaped = preview(
                principal(req).tenant_id,
                body["transform"],
                event["type"],
                event["data"],
                max_bytes=self.settings.max_body_bytes,
                endpoint_id=body.get("endpoint_id"),
            )
        except TransformError as exc:
            raise Problem(
                422,
                "transform-error",
                "Transform failed",
                f"transform: {exc}",
                field="transform",
                errors=[{"field": "transform", "message": str(exc), "error_class": ERROR_CLASS}],
            ) from None
        resp.media = {"body": shaped}
