"""Task request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StringConstraints

from backend.schemas.text import LINE_OF_TEXT, TEXT, json_int

Role = Literal["mike", "alex", "bob", "charlie"]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=LINE_OF_TEXT)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=LINE_OF_TEXT)]
Description = Annotated[str, StringConstraints(max_length=20_000, pattern=TEXT)]


class TaskConfig(BaseModel):
    """Per-task overrides of the team settings. Keys left out use the service defaults."""

    model_config = ConfigDict(extra="forbid")

    # Strict types: "yes" or 0.0 is not a boolean, "3" is not a number (what the schema says).
    max_rounds: json_int(1, 20) | None = Field(None, description="Upper bound on team rounds.")  # type: ignore[valid-type]
    max_revision_rounds: json_int(0, 5) | None = Field(None, description="Review/revise cycles allowed.")  # type: ignore[valid-type]
    auto_approve_plan: StrictBool | None = Field(None, description="Skip the human plan approval.")
    budget_usd: StrictFloat | None = Field(None, gt=0, le=10_000, description="Spending cap per run, in USD.")
    models: dict[Role, ModelName] | None = Field(None, description="Model per role, e.g. {\"alex\": \"gpt-4o\"}.")
    stream_deltas: StrictBool | None = Field(None, description="Stream live token deltas as agent.delta events.")
    require_passing_tests: StrictBool | None = Field(
        None,
        description="Complete a run only over tests that ran and passed (default true); false lets an approval stand over failing tests.",
    )
    allow_concurrent_runs: StrictBool | None = Field(None, description="Allow more than one active run of this task.")
    engine: Literal["native", "metagpt"] | None = Field(
        None,
        description="Engine that runs the team: native (default, MGX_ENGINE) or metagpt (MetaGPT's roles, out of process).",
    )

    def stored(self) -> dict:
        return self.model_dump(exclude_none=True)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    config: TaskConfig = Field(default_factory=TaskConfig)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class TaskUpdate(BaseModel):
    """A partial update. ``config`` is merged key by key (RFC 7396): a key set to null returns to
    the default, and ``"config": null`` returns every key to its default."""

    model_config = ConfigDict(extra="forbid")

    # May be left out, never null: the default stands for "absent" and is not validated, while
    # an explicit null is validated as a string and refused, as the schema (string only) says.
    title: Title = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    description: Description = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    config: TaskConfig | None = Field(None, description="Keys to change; null for a key resets it.")


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
