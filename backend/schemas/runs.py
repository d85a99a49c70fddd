"""Run request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from backend.schemas.tasks import TaskConfig
from backend.schemas.text import NAME, TEXT

Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=NAME)]
Notes = Annotated[str, StringConstraints(max_length=20_000, pattern=TEXT)]
Feedback = Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=TEXT)]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    overrides: TaskConfig = Field(default_factory=TaskConfig, description="Team settings for this run only.")
    label: Label | None = None
    notes: Notes | None = None


class RunUpdate(BaseModel):
    """Only descriptive fields are editable; status changes go through approve/reject/cancel."""

    model_config = ConfigDict(extra="forbid")

    label: Label | None = None
    notes: Notes | None = None


class RunApprove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Notes | None = None


class RunReject(BaseModel):
    # The schema says what the validator below checks: replanning (the default) needs feedback.
    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: _replan_needs_feedback(schema))

    feedback: Feedback | None = Field(None, description="What to change; required when `replan` is true.")
    replan: StrictBool = Field(True, description="Draft a new plan with the feedback, or end the run as rejected.")

    @model_validator(mode="after")
    def _feedback_for_replan(self) -> RunReject:
        if self.replan and not self.feedback:
            raise ValueError("feedback is required to replan: say what to change, or set replan to false")
        return self


def _replan_needs_feedback(schema: dict[str, Any]) -> None:
    """Two shapes instead of one: ``replan`` true (or left out) with feedback, or false."""
    properties = schema.pop("properties")
    feedback, replan = properties["feedback"], properties["replan"]
    text = next(choice for choice in feedback["anyOf"] if choice.get("type") == "string")
    schema.pop("additionalProperties", None)
    schema["oneOf"] = [
        {
            "title": "RunRejectReplan",
            "properties": {"feedback": {**text, "description": feedback.get("description", "")}, "replan": {**replan, "const": True}},
            "required": ["feedback"],
            "additionalProperties": False,
        },
        {
            "title": "RunRejectEnd",
            "properties": {"feedback": feedback, "replan": {**replan, "const": False, "default": False}},
            "required": ["replan"],
            "additionalProperties": False,
        },
    ]


class RunError(BaseModel):
    code: str
    message: str


class ArtifactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    number: int
    owner: str | None = Field(
        default=None, description="Name of the API key that created it; null when created without a key."
    )
    status: str
    phase: str | None
    label: str | None
    notes: str | None
    overrides: dict[str, Any]
    plan: dict[str, Any] | None
    complexity: str | None
    result: dict[str, Any] | None
    error: RunError | None
    usage: dict[str, Any]
    abandoned_usage: dict[str, Any] | None = Field(
        default=None,
        description=(
            "What executions that lost their lease (a crashed or stalled worker) spent after their last "
            "checkpoint, per role and total: billed by the provider, but not in `usage`, which restarts "
            "from the checkpoint when the run resumes. Null when no execution was lost."
        ),
    )
    timings: dict[str, Any]
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    approval_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int
    artifacts: list[ArtifactRead] = Field(default_factory=list)


class RunEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class RunLogPage(BaseModel):
    items: list[RunEventRead]
    next_after: int = Field(description="Pass as `after` to read the next lines.")
