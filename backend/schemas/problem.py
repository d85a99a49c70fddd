"""RFC 9457 problem details, and the ``responses=`` declarations routes use for OpenAPI."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:mgx:problem:"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `config.max_rounds`.")
    location: str = Field(description="Where the field was: body, query, path or header.")
    message: str
    type: str


class Problem(BaseModel):
    """An error response (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:mgx:problem:not-found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["task 8d0c... does not exist"])
    instance: str = Field(examples=["/tasks/8d0c..."])
    errors: list[FieldError] | None = Field(
        default=None, description="Present on validation errors: one entry per invalid field."
    )


def field_path(parts: tuple[object, ...] | list[object]) -> str:
    """A pydantic error location as a dotted path (``config.models.dave``)."""
    return ".".join(str(part) for part in parts if part != "[key]")


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem+json errors a route can answer."""
    return {
        code: {
            "model": Problem,
            "description": HTTPStatus(code).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in status_codes
    }
