"""What the MCP tools answer: compact views of tasks and runs for a model to read, each also the
tool's output schema. Built from the REST read models, so both surfaces show the same facts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from backend.schemas.runs import RunError, RunRead
from backend.schemas.tasks import TaskRead
from backend.services import run_states

ARTIFACT_URI = "mgx://runs/{run_id}/artifacts/{name}"
PLAN_URI = "mgx://runs/{run_id}/plan"

# What the caller can do next, by status: models act on this line.
NEXT_STEP = {
    run_states.QUEUED: "Queued; Mike plans it first. Call wait_run to follow it.",
    run_states.PLANNING: "Mike is planning. Call wait_run to follow it.",
    run_states.AWAITING_APPROVAL: (
        "The plan waits for a human: show `plan` to the user, then call approve_plan, or reject_plan "
        "with their feedback to have it re-planned."
    ),
    run_states.RUNNING: "The team is coding, testing and reviewing. Call wait_run to follow it.",
    run_states.COMPLETED: "Done. Read the files with get_artifact or the mgx://runs/{id}/artifacts/{name} resources.",
    run_states.FAILED: "The run failed; `error` says why. start_run again to retry.",
    run_states.CANCELLED: "Cancelled. Artifacts produced so far are kept.",
    run_states.REJECTED: "The plan was rejected; nothing was built.",
    run_states.EXPIRED: "Nobody approved the plan in time; start_run again.",
}


class ArtifactView(BaseModel):
    name: str
    media_type: str
    size: int
    uri: str = Field(description="Read it as an MCP resource, or with get_artifact.")


class RunView(BaseModel):
    """A run as the team sees it: where it is, its plan, its outcome and what it cost."""

    id: uuid.UUID
    task_id: uuid.UUID
    number: int
    status: str = Field(description="queued, planning, awaiting_approval, running, or a final state.")
    phase: str | None = Field(description="Inside `running`: coding, testing, verifying, reviewing, revising.")
    next_step: str
    plan: dict[str, Any] | None
    complexity: str | None
    result: dict[str, Any] | None = Field(description="The outcome summary once the run finished.")
    error: RunError | None
    usage: dict[str, Any] = Field(description="Tokens, cost and LLM calls, per role and in total.")
    approval_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    artifacts: list[ArtifactView]

    @classmethod
    def of(cls, run: RunRead) -> RunView:
        return cls(
            id=run.id,
            task_id=run.task_id,
            number=run.number,
            status=run.status,
            phase=run.phase,
            next_step=NEXT_STEP.get(run.status, ""),
            plan=run.plan,
            complexity=run.complexity,
            result=run.result,
            error=run.error,
            usage=run.usage,
            approval_expires_at=run.approval_expires_at,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            artifacts=[
                ArtifactView(
                    name=item.name,
                    media_type=item.media_type,
                    size=item.size,
                    uri=ARTIFACT_URI.format(run_id=run.id, name=quote(item.name, safe="/")),
                )
                for item in run.artifacts
            ],
        )


class RunListView(BaseModel):
    items: list[RunView]
    total: int
    limit: int
    offset: int


class TaskView(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    config: dict[str, Any]
    status: str
    total_runs: int
    created_at: datetime

    @classmethod
    def of(cls, task: TaskRead) -> TaskView:
        return cls(
            id=task.id,
            title=task.title,
            description=task.description,
            config=task.config,
            status=task.status,
            total_runs=task.total_runs,
            created_at=task.created_at,
        )
