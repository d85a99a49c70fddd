"""How routes answer a creation: 201 with ``Location`` and ``ETag``, and ``Idempotent-Replayed``
when the answer is the one stored for an ``Idempotency-Key``."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from backend.services.etags import etag
from backend.services.idempotency import CreatedResource


def created_answer(created: CreatedResource, response: Response) -> dict[str, Any]:
    """The headers of ``created`` set on ``response``; the body, for the route's response model."""
    response.headers["Location"] = created.location
    response.headers["ETag"] = etag(created.body["version"])
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return created.body
