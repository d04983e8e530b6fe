"""Falcon resources, one noun per module; item routes use `suffix=`."""

from __future__ import annotations

import falcon

from api.errors import Problem
from api.validation import int_param, text_param
from engine.db.pages import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from engine.errors import InvalidInputError
from engine.tenancy.credentials import Principal


def principal(req: falcon.Request) -> Principal:
    """The authenticated caller, set by the Auth middleware."""
    return req.context.principal


def paging(req: falcon.Request) -> tuple[int, str | None]:
    """The `limit` and `cursor` query parameters.

    Raises:
        Problem: 400 naming `limit`, or `cursor` when it is not one this API returned.
    """
    limit = int_param(req, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    cursor = text_param(req, "cursor")
    if cursor:
        try:
            decode_cursor(cursor)
        except InvalidInputError as exc:
            raise Problem(
                400, "invalid-parameter", "Invalid query parameter", str(exc), field="cursor"
            ) from None
    return limit, cursor
