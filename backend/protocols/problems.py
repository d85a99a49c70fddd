"""The problem details (RFC 9457 fields, as the REST API answers them) that protocol errors carry,
for the errors a service call can raise."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from backend.app.problems import DEPENDENCY_ERRORS
from backend.errors import APIError
from backend.schemas.problem import PROBLEM_TYPE_PREFIX, field_path

# What a protocol adapter turns into a problem instead of letting it escape as a crash.
SERVICE_ERRORS: tuple[type[Exception], ...] = (APIError, ValidationError, *DEPENDENCY_ERRORS)


def problem_for(error: Exception, instance: str) -> dict[str, Any]:
    """The problem body for one of ``SERVICE_ERRORS``; ``instance`` names the operation."""
    if isinstance(error, APIError):
        body = _problem(error.status_code, error.slug, error.title, error.detail, instance)
        body.update(error.extra)
        return body
    if isinstance(error, ValidationError):
        errors = [
            {"field": field_path(item["loc"]), "location": "arguments", "message": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        detail = "; ".join(f"{item['field'] or 'arguments'}: {item['message']}" for item in errors[:5])
        return {**_problem(422, "validation-error", "Unprocessable Content", detail, instance), "errors": errors}
    return _problem(
        503, "service-unavailable", "Service Unavailable", "the database is unavailable; try again shortly", instance
    )


def _problem(status: int, slug: str, title: str, detail: str, instance: str) -> dict[str, Any]:
    return {"type": PROBLEM_TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail, "instance": instance}
