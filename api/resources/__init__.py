"""Falcon resources, one noun per module; item routes use `suffix=`."""

from __future__ import annotations

import falcon

from api.validation import int_param, text_param
from engine.pages import DEFAULT_LIMIT, MAX_LIMIT
from engine.tenants import Principal


def principal(req: falcon.Request) -> Principal:
    """The authenticated caller, set by the Auth middleware."""
    return req.context.principal  # type: ignore[no-any-return]


def paging(req: falcon.Request) -> tuple[int, str | None]:
    """The `limit` and `cursor` query parameters."""
    limit = int_param(req, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    return limit, text_param(req, "cursor")
