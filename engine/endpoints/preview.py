"""A transform's preview: the body a delivery of a sample event would send, sent nowhere.

The evaluation is the delivery's own (`transforms.document`, then
`transforms.render`, with the same limit), so what the preview shows is what
a receiver gets; only the event's id and timestamp are made up for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.db.models import Endpoint, Event, utcnow
from engine.endpoints import crud, transforms
from engine.ids import new_id


def preview(
    tenant_id: str,
    transform: Mapping[str, Any],
    event_type: str,
    data: Any,
    *,
    max_bytes: int,
    endpoint_id: str | None = None,
) -> Any:
    """The JSON body `transform` makes of an event of `event_type` carrying `data`.

    With `endpoint_id`, the expression sees that endpoint's id and metadata;
    without, `endpoint` is `{"id": null, "metadata": {}}`.

    Raises:
        InvalidInputError: the transform could not be saved (names `transform`).
        NotFoundError: no such endpoint for this tenant.
        TransformError: this event's result cannot be sent (null, a scalar, too large).
    """
    transforms.check(transform)
    if endpoint_id is not None:
        endpoint = crud.get_endpoint(tenant_id, endpoint_id)
    else:
        endpoint = Endpoint(id=None, tenant_id=tenant_id, metadata={})
    event = Event(
        id=new_id("evt"),
        tenant_id=tenant_id,
        event_type=event_type,
        payload=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        created_at=utcnow(),
    )
    body = transforms.render(transform, transforms.document(event, endpoint), max_bytes=max_bytes)
    return json.loads(body)
