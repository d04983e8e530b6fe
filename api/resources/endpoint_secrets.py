"""`/v1/endpoints/{endpoint_id}/secret`: read and rotate an endpoint's signing secret."""

from __future__ import annotations

import falcon

from api import views
from api.resources import principal
from api.validation import read_optional_json
from engine.endpoints import crud as endpoints
from engine.endpoints import secrets as endpoint_secrets
from engine.secretbox import SecretBox
from engine.settings import Settings


class EndpointSecrets:
    """The secret (`on_get`) and its rotation (`on_post_rotate`).

    Reading the secret takes `endpoints:write`, as rotating it does: whoever holds it can
    sign webhooks the receiver will believe, so a read-only key must not have it.
    """

    scopes = {"GET": "endpoints:write", "POST": "endpoints:write"}

    def __init__(self, settings: Settings, box: SecretBox) -> None:
        self.settings = settings
        self.box = box

    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        resp.media = views.endpoint_secret(endpoint_secrets.reveal(row, self.box))

    def on_post_rotate(self, req: falcon.Request, resp: falcon.Response, endpoint_id: str) -> None:
        body = read_optional_json(req, "secret_rotate", self.settings.max_body_bytes)
        row = endpoints.get_endpoint(principal(req).tenant_id, endpoint_id)
        grace_s = body.get("grace_period_s", self.settings.secret_rotation_grace_s)
        view = endpoint_secrets.rotate(
            row, self.box, grace_period_s=grace_s, supplied=body.get("secret")
        )
        resp.media = views.endpoint_secret(view)
