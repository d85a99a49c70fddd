"""A2A tasks as views of runs: an A2A task is a run (its id is the run's id, its context id the
run's task's id), its state is the run's status, its artifacts are the run's files. Nothing is
stored here; ``RunTaskStore`` reads through the run service and refuses writes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from a2a.helpers.proto_helpers import new_data_part, new_message, new_text_part
from a2a.server.context import ServerCallContext
from a2a.server.tasks.task_store import TaskStore
from a2a.types import (
    Artifact,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError, UnsupportedOperationError
from google.protobuf.timestamp_pb2 import Timestamp

from backend.db.models import Artifact as RunArtifact
from backend.protocols.a2a.errors import a2a_error_for
from backend.protocols.caller import CallerServices
from backend.protocols.problems import SERVICE_ERRORS
from backend.schemas.runs import RunRead
from backend.services import run_states
from backend.services.events import StreamEvent
from backend.services.runs import run_read

STATE_OF_STATUS = {
    run_states.QUEUED: TaskState.TASK_STATE_SUBMITTED,
    run_states.PLANNING: TaskState.TASK_STATE_WORKING,
    run_states.AWAITING_APPROVAL: TaskState.TASK_STATE_INPUT_REQUIRED,
    run_states.RUNNING: TaskState.TASK_STATE_WORKING,
    run_states.COMPLETED: TaskState.TASK_STATE_COMPLETED,
    run_states.FAILED: TaskState.TASK_STATE_FAILED,
    run_states.CANCELLED: TaskState.TASK_STATE_CANCELED,
    run_states.REJECTED: TaskState.TASK_STATE_REJECTED,
    run_states.EXPIRED: TaskState.TASK_STATE_FAILED,  # nobody approved the plan in time
}
STATUSES_OF_STATE: dict[int, list[str]] = {}
for _status, _state in STATE_OF_STATUS.items():
    STATUSES_OF_STATE.setdefault(_state, []).append(_status)

# A stream ends where the task stops for good or waits for the user.
STREAM_ENDS = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
    }
)
MESSAGE_CHARACTERS = 4000
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_OFFSET = 50, 100, 10_000
APPROVAL_HELP = (
    "Reply in this task: 'approve' to start the team coding, or what to change to have the plan "
    "re-drafted (a data part {\"decision\": \"approve\"|\"reject\", \"feedback\": \"...\"} works too)."
)


def parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise TaskNotFoundError(message=f"task {text!r} does not exist") from None


def _timestamp(run: RunRead) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(run.updated_at)
    return stamp


def agent_message(run: RunRead, *parts: Part) -> Message:
    return new_message(list(parts), context_id=str(run.task_id), task_id=str(run.id), role=Role.ROLE_AGENT)


def status_message(run: RunRead) -> Message | None:
    """What the agent says with the run's current status."""
    if run.status == run_states.AWAITING_APPROVAL:
        summary = (run.plan or {}).get("summary") or "(no summary)"
        text = f"Mike's plan: {summary}\n\n{json.dumps(run.plan, indent=2)[:MESSAGE_CHARACTERS]}\n\n{APPROVAL_HELP}"
        return agent_message(run, new_text_part(text), new_data_part(run.plan or {}, media_type="application/json"))
    if run.error is not None:
        return agent_message(run, new_text_part(f"{run.error.code}: {run.error.message}"))
    if run.status == run_states.COMPLETED and run.result is not None:
        return agent_message(
            run, new_text_part(json.dumps(run.result)[:MESSAGE_CHARACTERS]), new_data_part(run.result, "application/json")
        )
    if run.phase is not None:
        return agent_message(run, new_text_part(f"{run.status}: {run.phase}"))
    return None


def task_status(run: RunRead) -> TaskStatus:
    status = TaskStatus(state=STATE_OF_STATUS[run.status], timestamp=_timestamp(run))
    message = status_message(run)
    if message is not None:
        status.message.CopyFrom(message)
    return status


def artifact_of(item: RunArtifact) -> Artifact:
    try:
        part = new_text_part(item.content.decode("utf-8"), media_type=item.media_type)
    except UnicodeDecodeError:
        part = Part(raw=item.content, media_type=item.media_type)
    part.filename = item.name.rsplit("/", 1)[-1]
    return Artifact(artifact_id=item.name, name=item.name, parts=[part])


def task_of(run: RunRead, artifacts: Sequence[RunArtifact] = ()) -> Task:
    return Task(
        id=str(run.id),
        context_id=str(run.task_id),
        status=task_status(run),
        artifacts=[artifact_of(item) for item in artifacts],
    )


def status_update(run: RunRead) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(task_id=str(run.id), context_id=str(run.task_id), status=task_status(run))


def progress_update(run: RunRead, event: StreamEvent) -> TaskStatusUpdateEvent | None:
    """A working-state update for an agent message or a phase, or None for other events."""
    data = event.data
    if event.type == "agent.message":
        text = f"{data.get('role', 'agent')} ({data.get('action', '')}): {data.get('content', '')}"
    elif event.type == "run.phase":
        text = f"phase {data.get('phase')} {data.get('state', '')}".rstrip()
    else:
        return None
    status = TaskStatus(state=TaskState.TASK_STATE_WORKING, timestamp=_timestamp(run))
    status.message.CopyFrom(agent_message(run, new_text_part(text[:MESSAGE_CHARACTERS])))
    return TaskStatusUpdateEvent(task_id=str(run.id), context_id=str(run.task_id), status=status)


def artifact_update(run: RunRead, item: RunArtifact) -> TaskArtifactUpdateEvent:
    return TaskArtifactUpdateEvent(
        task_id=str(run.id), context_id=str(run.task_id), artifact=artifact_of(item), last_chunk=True
    )


def services_of(context: ServerCallContext) -> CallerServices:
    return context.state["services"]


async def task_with_files(services: CallerServices, run_id: uuid.UUID) -> Task:
    """The run as a task, its files as artifacts."""
    run, files = await services.runs.get_run_with_files(run_id)
    return task_of(run, files)


class RunTaskStore(TaskStore):
    """The ``TaskStore`` interface over runs, for the caller the context carries. A run changes
    only through the run service (a message, a cancel), so saving a task is refused."""

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        services = services_of(context)
        try:
            return await task_with_files(services, parse_id(task_id))
        except TaskNotFoundError:
            return None
        except SERVICE_ERRORS as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise a2a_error_for(error, f"tasks/get {task_id}") from None

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        services = services_of(context)
        page_size = params.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidParamsError(message=f"pageSize must be 1-{MAX_PAGE_SIZE}")
        if params.page_token and not (params.page_token.isdigit() and int(params.page_token) <= MAX_OFFSET):
            raise InvalidParamsError(message="pageToken is not one this server gave")
        offset = int(params.page_token or 0)
        try:
            task_id = uuid.UUID(params.context_id) if params.context_id else None
        except ValueError:
            raise InvalidParamsError(message=f"contextId {params.context_id!r} is not a context of this agent") from None
        # A state can stand for several run statuses (working: planning and running): each is
        # listed up to the page's end and the lists merged, newest first.
        statuses: list[str | None] = list(STATUSES_OF_STATE.get(params.status, [])) if params.status else [None]
        runs, total = [], 0
        try:
            for status in statuses:
                window = (page_size, offset) if len(statuses) == 1 else (offset + page_size, 0)
                items, count = await services.runs.list_runs(
                    task_id=task_id, status=status, limit=window[0], offset=window[1]
                )
                runs.extend(items)
                total += count
            runs.sort(key=lambda run: run.created_at, reverse=True)
            page = runs if len(statuses) == 1 else runs[offset : offset + page_size]
            tasks = [
                await task_with_files(services, run.id) if params.include_artifacts else task_of(run_read(run))
                for run in page
            ]
        except SERVICE_ERRORS as error:
            raise a2a_error_for(error, "tasks/list") from None
        following = offset + page_size
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=str(following) if following < total else "",
            page_size=page_size,
            total_size=total,
        )

    async def save(self, task: Task, context: ServerCallContext) -> None:
        raise UnsupportedOperationError(message="tasks are views of runs; send a message or cancel to change one")

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        raise UnsupportedOperationError(message="tasks are views of runs; finished runs are deleted through the API")
