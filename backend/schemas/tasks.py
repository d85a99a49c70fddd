"""Task request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Role = Literal["mike", "alex", "bob", "charlie"]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]


class TaskConfig(BaseModel):
    """Per-task overrides of the team settings. Keys left out use the service defaults."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: int | None = Field(None, ge=1, le=20, description="Upper bound on team rounds.")
    max_revision_rounds: int | None = Field(None, ge=0, le=5, description="Review/revise cycles allowed.")
    auto_approve_plan: bool | None = Field(None, description="Skip the human plan approval.")
    budget_usd: float | None = Field(None, gt=0, le=10_000, description="Spending cap per run, in USD.")
    models: dict[Role, ModelName] | None = Field(None, description="Model per role, e.g. {\"alex\": \"gpt-4o\"}.")
    stream_deltas: bool | None = Field(None, description="Stream live token deltas as agent.delta events.")
    allow_concurrent_runs: bool | None = Field(None, description="Allow more than one active run of this task.")

    def stored(self) -> dict:
        return self.model_dump(exclude_none=True)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    config: TaskConfig = Field(default_factory=TaskConfig)


class TaskUpdate(BaseModel):
    """A partial update. ``config`` is merged key by key; a key set to null returns to the default."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    config: dict[str, object] | None = None

    @field_validator("title", "description", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str
    config: dict
    status: str = Field(description="Status of the latest run; `pending` before the first run.")
    owner: str | None = Field(
        default=None, description="Name of the API key that created it; null when created without a key."
    )
    total_runs: int
    successful_runs: int
    failed_runs: int
    last_run_id: uuid.UUID | None
    last_run_status: str | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
