"""The A2A request handler (the SDK's ``RequestHandler`` interface) over the run service and the
event log, so an A2A task is a run and nothing is kept in this process.

Why not the SDK's ``DefaultRequestHandler`` with an ``AgentExecutor``: that design executes the
agent inside the serving process and keeps each task's live state in an in-memory registry (its
own docs: resubscription then only works on the replica holding the task). Runs execute on the
background runner of any replica and every change is in the event log, so this handler starts
and steers runs through ``RunService`` and follows them through ``EventBroadcaster``, which
replays and fans out across processes.

Messages: one without ``taskId`` starts a run of a new task (its text is what to build); one in a
task that is ``input-required`` approves the plan ('approve', 'yes', ...) or rejects it with its
text as feedback (re-plan). ``message/send`` answers once the task stops or needs input (or after
``SEND_WAIT_SECONDS``, or at once with ``returnImmediately``); ``message/stream`` and
``tasks/resubscribe`` stream status and artifact updates until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from a2a.helpers.proto_helpers import get_data_parts, get_text_parts
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    UnsupportedOperationError,
)

from backend.protocols.a2a.errors import a2a_error_for
from backend.protocols.a2a.tasks import (
    STATE_OF_STATUS,
    STREAM_ENDS,
    RunTaskStore,
    artifact_update,
    parse_id,
    progress_update,
    services_of,
    status_update,
    task_of,
    task_with_files,
)
from backend.protocols.caller import CallerServices
from backend.protocols.problems import SERVICE_ERRORS
from backend.schemas.runs import RunApprove, RunCreate, RunRead, RunReject
from backend.schemas.tasks import TaskCreate
from backend.services import run_states

# message/send waits this long for the task to stop or need input; then it answers the task as
# it is (the caller polls tasks/get or resubscribes).
SEND_WAIT_SECONDS = 120.0
APPROVALS = frozenset({"approve", "approved", "yes", "y", "ok", "okay", "lgtm", "go", "go ahead", "accept", "ship it"})
TITLE_CHARACTERS = 80


def message_text(message: Message) -> str:
    return "\n".join(get_text_parts(message.parts)).strip()


def plan_decision(message: Message) -> RunApprove | RunReject:
    """What a user message in an input-required task says about the plan."""
    for data in get_data_parts(message.parts):
        if isinstance(data, dict) and data.get("decision") in ("approve", "reject"):
            feedback = str(data.get("feedback") or "").strip() or None
            if data["decision"] == "approve":
                return RunApprove(comment=feedback)
            return RunReject(feedback=feedback, replan=feedback is not None)
    text = message_text(message)
    if text.lower().rstrip(".!") in APPROVALS:
        return RunApprove()
    if not text:
        raise InvalidParamsError(message="say 'approve', or what to change in the plan")
    return RunReject(feedback=text, replan=True)


class RunsRequestHandler(RequestHandler):
    def __init__(self, card: AgentCard) -> None:
        self.card = card
        self.tasks = RunTaskStore()

    # Reading

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        return await self.tasks.get(params.id, context)

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self.tasks.list(params, context)

    # Steering

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        services = services_of(context)
        try:
            run = await services.runs.cancel(parse_id(params.id))
            return await task_with_files(services, run.id)
        except SERVICE_ERRORS as error:
            mapped = a2a_error_for(error, f"tasks/cancel {params.id}")
            if getattr(error, "status_code", None) == 409:
                raise TaskNotCancelableError(message=mapped.message, data=mapped.data) from None
            raise mapped from None

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        services = services_of(context)
        run, after = await self._act_on(params.message, services)
        if not params.configuration.return_immediately and STATE_OF_STATUS[run.status] not in STREAM_ENDS:
            try:
                async with asyncio.timeout(SEND_WAIT_SECONDS):
                    async for _ in self._follow(services, run, after):
                        pass
            except TimeoutError:
                pass
        return await self._task(services, run.id)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        services = services_of(context)
        run, after = await self._act_on(params.message, services)
        yield task_of(run)
        if STATE_OF_STATUS[run.status] in STREAM_ENDS:
            return
        async for event in self._follow(services, run, after):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        services = services_of(context)
        run = await self._run(services, params.id)
        if run.status in run_states.TERMINAL_STATUSES:
            raise UnsupportedOperationError(message=f"task {run.id} is {run.status}; there is nothing to follow")
        after = await services.event_head(run.id)
        snapshot = await self._task(services, run.id)
        yield snapshot
        if snapshot.status.state in STREAM_ENDS:
            return
        async for event in self._follow(services, run, after):
            yield event

    # Not offered

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError

    # Runs behind the tasks

    async def _act_on(self, message: Message, services: CallerServices) -> tuple[RunRead, int]:
        """Start a run for a new task, or apply a decision about the plan of the message's task;
        the run and the event seq to follow it from."""
        try:
            if message.task_id:
                run = await self._run(services, message.task_id)
                if run.status != run_states.AWAITING_APPROVAL:
                    raise UnsupportedOperationError(
                        message=f"task {run.id} is {run.status}; it takes a message only while input-required"
                    )
                after = await services.event_head(run.id)
                decision = plan_decision(message)
                if isinstance(decision, RunApprove):
                    return await services.runs.approve(run.id, decision), after
                return await services.runs.reject(run.id, decision), after
            text = message_text(message)
            if not text:
                raise InvalidParamsError(message="say what to build in a text part")
            title = " ".join(text.split())[:TITLE_CHARACTERS]
            created = await services.tasks.create_task(TaskCreate(title=title, description=text), idempotency_key=None)
            started = await services.runs.create_run(RunCreate(task_id=created.body["id"]), idempotency_key=None)
            return RunRead.model_validate(started.body), 0
        except SERVICE_ERRORS as error:
            raise a2a_error_for(error, "message/send") from None

    async def _run(self, services: CallerServices, task_id: str) -> RunRead:
        try:
            return await services.runs.get_run_read(parse_id(task_id))
        except SERVICE_ERRORS as error:
            raise a2a_error_for(error, f"tasks {task_id}") from None

    async def _task(self, services: CallerServices, run_id: Any) -> Task:
        try:
            return await task_with_files(services, run_id)
        except SERVICE_ERRORS as error:
            raise a2a_error_for(error, f"tasks {run_id}") from None

    async def _follow(self, services: CallerServices, run: RunRead, after: int) -> AsyncIterator[Event]:
        """Status and artifact updates from the run's events after ``after``, until the task
        stops or waits for the user."""
        try:
            async with services.following(run.id, after) as subscription:
                if subscription is None:
                    return
                while (batch := await subscription.next_batch()) is not None:
                    for event in batch:
                        if event.seq is None:
                            continue
                        if event.type == "artifact.created":
                            yield artifact_update(run, await services.runs.get_artifact(run.id, event.data["name"]))
                        elif event.type == "run.status":
                            update = await self._status_update(services, run, event.data.get("status", ""))
                            yield update
                            if update.status.state in STREAM_ENDS:
                                return
                        elif (progress := progress_update(run, event)) is not None:
                            yield progress
        except SERVICE_ERRORS as error:
            raise a2a_error_for(error, f"tasks {run.id}") from None

    async def _status_update(self, services: CallerServices, run: RunRead, status: str) -> TaskStatusUpdateEvent:
        """The update for a status change: with the run's message (the plan, the error, the
        result) when the run is still in that status, else only the state."""
        state = STATE_OF_STATUS.get(status, TaskState.TASK_STATE_WORKING)
        if state in STREAM_ENDS:
            current = await services.runs.get_run_read(run.id)
            if current.status == status:
                return status_update(current)
        return TaskStatusUpdateEvent(task_id=str(run.id), context_id=str(run.task_id), status=TaskStatus(state=state))
