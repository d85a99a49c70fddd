"""Who the caller is, as the service identified it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class IdentityRead(BaseModel):
    access: Literal["open", "api_keys"] = Field(description="`open` when the service runs without `API_KEYS`.")
    name: str | None = Field(description="The name of the caller's API key; null in open mode.")
    admin: bool = Field(description="Whether the caller sees everyone's tasks and runs (always true in open mode).")
