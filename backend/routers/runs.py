"""Runs API: start a task's team, approve or reject its plan, cancel it, read its artifacts and log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse

from backend.app.deps import (
    MAX_EVENT_SEQ,
    IdempotencyKeyHeader,
    IfMatchHeader,
    LimitQuery,
    OffsetQuery,
)
from backend.routers.answers import created_answer
from backend.routers.links import ARTIFACT_LINKS, RUN_LINKS, linked
from backend.schemas.common import Page
from backend.schemas.problem import error_responses
from backend.schemas.runs import (
    ArtifactRead,
    RunApprove,
    RunCreate,
    RunEventRead,
    RunLogPage,
    RunRead,
    RunReject,
    RunUpdate,
)
from backend.schemas.text import NAME
from backend.services.etags import etag
from backend.services.run_archive import ARCHIVE_MEDIA_TYPE
from backend.services.run_states import ALL_STATUSES
from backend.services.runs import RunService, run_read

router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[uuid.UUID, Path(description="The run's id.")]
RunStatus = Literal[tuple(sorted(ALL_STATUSES))]  # type: ignore[valid-type]
ArtifactName = Annotated[str, Path(max_length=255, pattern=NAME, description="The artifact's name, e.g. `app/main.py`.")]


async def get_run_service(request: Request) -> RunService:
    # The service opens its own unit of work per operation (see TaskService).
    state = request.app.state
    return RunService(
        state.database,
        state.run_signals,
        approval_ttl_seconds=state.settings.mgx_approval_ttl_seconds,
        idempotency_ttl_seconds=state.settings.idempotency_ttl_seconds,
        principal=request.state.principal,
    )


RunServiceDep = Annotated[RunService, Depends(get_run_service)]


def _with_etag(run: RunRead, response: Response) -> RunRead:
    response.headers["ETag"] = etag(run.version)
    return run


@router.get("/", response_model=Page[RunRead], summary="List runs", responses=error_responses(422))
async def list_runs(
    service: RunServiceDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    task_id: Annotated[uuid.UUID, Query(description="Only runs of this task.")] = None,
    status_filter: Annotated[RunStatus, Query(alias="status", description="Only runs in this status.")] = None,
) -> Page[RunRead]:
    items, total = await service.list_runs(task_id=task_id, status=status_filter, limit=limit, offset=offset)
    return Page[RunRead](items=[run_read(run) for run in items], total=total, limit=limit, offset=offset)


@router.post(
    "/",
    response_model=RunRead,
    status_code=status.HTTP_201_CREATED,
    summary="Start a run of a task (queued; Mike plans it first)",
    responses={**linked(201, "The run was queued (or replayed for the same Idempotency-Key).", RUN_LINKS), **error_responses(404, 409, 415, 422)},
)
async def create_run(
    body: RunCreate, service: RunServiceDep, response: Response, idempotency_key: IdempotencyKeyHeader = None
) -> Any:
    created = await service.create_run(body, idempotency_key=idempotency_key)
    return created_answer(created, response)


@router.get(
    "/{run_id}",
    response_model=RunRead,
    summary="Get a run",
    responses={**linked(200, "The run.", RUN_LINKS), **error_responses(404, 422)},
)
async def get_run(run_id: RunId, service: RunServiceDep, response: Response) -> RunRead:
    return _with_etag(await service.get_run_read(run_id), response)


@router.patch(
    "/{run_id}",
    response_model=RunRead,
    summary="Edit a run's label or notes (status changes use approve/reject/cancel)",
    responses=error_responses(404, 412, 415, 422),
)
async def update_run(
    run_id: RunId, body: RunUpdate, service: RunServiceDep, response: Response, if_match: IfMatchHeader = None
) -> RunRead:
    return _with_etag(await service.update_run(run_id, body, if_match=if_match), response)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a finished run",
    responses=error_responses(404, 409, 412, 422),
)
async def delete_run(run_id: RunId, service: RunServiceDep, if_match: IfMatchHeader = None) -> Response:
    await service.delete_run(run_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{run_id}/approve",
    response_model=RunRead,
    summary="Approve the plan: the run is queued for execution",
    responses=error_responses(404, 409, 415, 422),
)
async def approve_run(
    run_id: RunId, service: RunServiceDep, response: Response, body: RunApprove | None = None
) -> RunRead:
    return _with_etag(await service.approve(run_id, body or RunApprove()), response)


@router.post(
    "/{run_id}/reject",
    response_model=RunRead,
    summary="Reject the plan: re-plan with feedback, or end the run as rejected",
    responses=error_responses(404, 409, 415, 422),
)
async def reject_run(run_id: RunId, body: RunReject, service: RunServiceDep, response: Response) -> RunRead:
    return _with_etag(await service.reject(run_id, body), response)


@router.post(
    "/{run_id}/cancel",
    response_model=RunRead,
    summary="Cancel a run in any non-terminal state (artifacts so far are kept)",
    responses=error_responses(404, 409, 422),
)
async def cancel_run(run_id: RunId, service: RunServiceDep, response: Response) -> RunRead:
    return _with_etag(await service.cancel(run_id), response)


@router.get(
    "/{run_id}/artifacts",
    response_model=list[ArtifactRead],
    summary="List a run's artifacts",
    responses={**linked(200, "The run's artifacts, by name.", ARTIFACT_LINKS), **error_responses(404, 422)},
)
async def list_artifacts(run_id: RunId, service: RunServiceDep) -> list[ArtifactRead]:
    return [ArtifactRead.model_validate(item) for item in await service.list_artifacts(run_id)]


@router.get(
    "/{run_id}/artifacts/{name:path}",
    summary="Download one artifact (raw content with its media type)",
    response_class=Response,
    responses={200: {"description": "The artifact's content.", "content": {"*/*": {}}}, **error_responses(404, 422)},
)
async def get_artifact(run_id: RunId, name: ArtifactName, service: RunServiceDep) -> Response:
    artifact = await service.get_artifact(run_id, name)
    media_type = artifact.media_type
    if media_type.startswith("text/") or media_type == "application/json":
        media_type = f"{media_type}; charset=utf-8"
    return Response(
        artifact.content,
        media_type=media_type,
        headers={"ETag": f'"{artifact.sha256}"', "Content-Disposition": f'inline; filename="{name.rsplit("/", 1)[-1]}"'},
    )


@router.get(
    "/{run_id}/archive",
    summary="Download all of a run's artifacts as one zip file",
    description=(
        "Every artifact (plan, code, tests, review, sandbox report) under one folder named after "
        "the run. A run still going gives the files produced so far."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "A zip file (`Content-Disposition: attachment`).",
            "content": {ARCHIVE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(404, 422),
    },
)
async def get_archive(run_id: RunId, service: RunServiceDep) -> Response:
    archive = await service.archive(run_id)
    return Response(
        archive.content,
        media_type=ARCHIVE_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{archive.filename}"'},
    )


@router.get(
    "/{run_id}/logs",
    response_model=RunLogPage,
    summary="The run's persisted event log, in order (Accept: text/plain for a transcript)",
    responses={200: {"content": {"text/plain": {}}}, **error_responses(404, 422)},
)
async def run_logs(
    run_id: RunId,
    service: RunServiceDep,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ, description="Return events with seq greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    accept: Annotated[str, Header()] = None,
) -> Any:
    events = await service.list_events(run_id, after=after, limit=limit)
    items = [RunEventRead.model_validate(event) for event in events]
    next_after = items[-1].seq if items else after
    if accept and "text/plain" in accept and "application/json" not in accept:
        return PlainTextResponse("".join(transcript_line(item) for item in items))
    return RunLogPage(items=items, next_after=next_after)


def transcript_line(event: RunEventRead) -> str:
    data = event.data
    stamp = event.created_at.strftime("%Y-%m-%d %H:%M:%S")
    if event.type == "agent.message":
        summary = f"{data.get('role', '?')} {data.get('action', '')}: {data.get('content', '')}"
    elif event.type == "run.status":
        summary = f"status {data.get('previous')} -> {data.get('status')}"
    elif event.type == "run.phase":
        summary = f"phase {data.get('phase')} {data.get('state')}"
    elif event.type == "artifact.created":
        summary = f"artifact {data.get('name')} ({data.get('size')} bytes)"
    elif event.type == "run.usage":
        total = data.get("total", {})
        summary = f"usage {total.get('total_tokens', 0)} tokens, ${total.get('cost_usd', 0):.4f}, {total.get('llm_calls', 0)} call(s)"
    elif event.type == "run.plan_ready":
        summary = f"plan ready: {data.get('plan', {}).get('summary', '')}"
    elif event.type == "sandbox.result":
        report = data.get("report", {})
        summary = f"sandbox passed={report.get('passed')} failed={report.get('failed')} errors={report.get('errors')}"
    else:
        summary = ", ".join(f"{key}={value}" for key, value in data.items() if not isinstance(value, dict | list))
    return f"[{event.seq:>4}] {stamp} {event.type}: {summary}\n"
