"""The MCP tools: each a thin call into the task and run services, answering a view of the task
or run (also its output schema), or a tool error carrying the problem detail REST would answer."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, Field

from backend.protocols.caller import CallerServices, services_for
from backend.protocols.mcp.approval import PlanApproval
from backend.protocols.mcp.progress import progress_message
from backend.protocols.mcp.views import RunListView, RunView, TaskView
from backend.protocols.problems import SERVICE_ERRORS, problem_for
from backend.errors import BadRequestError
from backend.schemas.runs import RunApprove, RunCreate, RunRead, RunReject
from backend.schemas.tasks import TaskConfig, TaskCreate, TaskRead
from backend.services import run_states
from backend.services.runs import run_read

RunId = Annotated[uuid.UUID, Field(description="The run's id (from start_run or list_runs).")]
Timeout = Annotated[float, Field(gt=0, le=600, description="Seconds to wait at most before answering.")]
RunStatus = Literal[
    "queued", "planning", "awaiting_approval", "running", "completed", "failed", "cancelled", "rejected", "expired"
]
TITLE_FROM_DESCRIPTION = 80

RunAnswer = Annotated[CallToolResult, RunView]


def caller(ctx: Context) -> CallerServices:
    return services_for(ctx.request_context.request)


def structured(view: BaseModel) -> CallToolResult:
    data = view.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data))], structured_content=data)


def answers_problems(tool: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Service errors become tool errors the model can read: the problem detail as text, and the
    whole problem (status, type, detail) as structured content."""

    @functools.wraps(tool)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await tool(*args, **kwargs)
        except SERVICE_ERRORS as error:
            problem = problem_for(error, f"tools/call {tool.__name__}")
            text = f"{problem['title']} ({problem['status']}): {problem['detail']}"
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=problem, is_error=True)

    return call


@answers_problems
async def create_task(
    title: Annotated[str, Field(description="A short name for what to build.")],
    description: Annotated[str, Field(description="What to build, in as much detail as the team needs.")],
    ctx: Context,
    config: Annotated[TaskConfig | None, Field(description="Team settings for this task; omit for defaults.")] = None,
) -> Annotated[CallToolResult, TaskView]:
    """Create a task: what the team (Mike plans, Alex codes, Bob writes tests, Charlie reviews)
    should build. Then call start_run with its id. To do both at once, call start_run with a
    description instead."""
    services = caller(ctx)
    created = await services.tasks.create_task(
        TaskCreate(title=title, description=description, config=config or TaskConfig()), idempotency_key=None
    )
    return structured(TaskView.of(TaskRead.model_validate(created.body)))


@answers_problems
async def start_run(
    ctx: Context,
    task_id: Annotated[uuid.UUID | None, Field(description="The task to run (from create_task).")] = None,
    description: Annotated[
        str | None, Field(description="Instead of task_id: what to build; a task is created for it.")
    ] = None,
    title: Annotated[str | None, Field(description="With description: the new task's title.")] = None,
    auto_approve_plan: Annotated[
        bool | None, Field(description="Skip the human plan approval for this run.")
    ] = None,
) -> RunAnswer:
    """Start the team on a task. The run is queued, Mike drafts a plan, and unless approval is
    skipped the run waits in awaiting_approval until the plan is approved. Follow it with
    wait_run; the answer's next_step says what to do."""
    services = caller(ctx)
    if (task_id is None) == (description is None):
        raise BadRequestError("give either task_id (an existing task) or description (a new task), not both")
    if task_id is None:
        assert description is not None
        name = title or " ".join(description.split())[:TITLE_FROM_DESCRIPTION] or "task"
        created = await services.tasks.create_task(TaskCreate(title=name, description=description), idempotency_key=None)
        task_id = created.body["id"]
    overrides = TaskConfig(auto_approve_plan=auto_approve_plan)
    created_run = await services.runs.create_run(RunCreate(task_id=task_id, overrides=overrides), idempotency_key=None)
    return structured(RunView.of(RunRead.model_validate(created_run.body)))


@answers_problems
async def get_run(run_id: RunId, ctx: Context) -> RunAnswer:
    """A run's status, phase, plan, result summary, files and usage (tokens, cost)."""
    return structured(RunView.of(await caller(ctx).runs.get_run_read(run_id)))


@answers_problems
async def wait_run(
    run_id: RunId, ctx: Context, timeout_seconds: Timeout = 60
) -> RunAnswer | InputRequiredResult:
    """Wait until the run finishes, or needs a human, or timeout_seconds pass; then answer the run.
    Sends a progress notification for each phase, agent message and file while waiting. When the
    plan needs approval and the client can ask its user (elicitation), the user is asked here;
    otherwise the answer is awaiting_approval and approve_plan/reject_plan decide."""
    services = caller(ctx)
    approval = PlanApproval(ctx, services.runs)
    run = await services.runs.get_run_read(run_id)
    # A retry carrying the user's answer continues the call: its progress starts from here.
    after = await services.event_head(run_id) if ctx.input_responses else 0
    run = await approval.apply_answers(run)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    if run.status in run_states.TERMINAL_STATUSES:
        return structured(RunView.of(run))
    async with services.following(run_id, after) as subscription:
        # The stream, not a re-read of the run, says when it ended: the run's row can be ahead
        # of the events delivered so far, and every one of them is reported first.
        ended = subscription is None
        while not ended:
            if run.status == run_states.AWAITING_APPROVAL:
                asked = await approval.ask(run)
                if isinstance(asked, InputRequiredResult):
                    return asked
                if asked.status == run_states.AWAITING_APPROVAL:
                    break  # nobody decided: the caller decides with approve_plan / reject_plan
                run = asked
            remaining = deadline - loop.time()
            batch = await subscription.next_batch(idle_timeout=remaining) if remaining > 0 else None
            if not batch:
                break
            needs_approval = False
            for event in batch:
                if event.seq is None:
                    continue
                message = progress_message(event)
                if message is not None:
                    await ctx.report_progress(event.seq, message=message)
                ended = ended or event.terminal
                needs_approval = needs_approval or event.type == "run.approval_required"
            if needs_approval and not ended:
                run = await services.runs.get_run_read(run_id)
    return structured(RunView.of(await services.runs.get_run_read(run_id)))


@answers_problems
async def approve_plan(
    run_id: RunId,
    ctx: Context,
    comment: Annotated[str | None, Field(description="Optional note for the team.")] = None,
) -> RunAnswer:
    """Approve the plan of a run in awaiting_approval: the team starts coding. Only after the
    user agreed to the plan."""
    return structured(RunView.of(await caller(ctx).runs.approve(run_id, RunApprove(comment=comment))))


@answers_problems
async def reject_plan(
    run_id: RunId,
    ctx: Context,
    feedback: Annotated[str | None, Field(description="What to change; required to re-plan.")] = None,
    replan: Annotated[bool, Field(description="Re-draft the plan with the feedback, or end the run.")] = True,
) -> RunAnswer:
    """Reject the plan of a run in awaiting_approval: with feedback Mike drafts a new plan (the
    run waits for approval again); with replan false the run ends as rejected."""
    return structured(
        RunView.of(await caller(ctx).runs.reject(run_id, RunReject(feedback=feedback, replan=replan)))
    )


@answers_problems
async def cancel_run(run_id: RunId, ctx: Context) -> RunAnswer:
    """Cancel a run that has not finished; files produced so far are kept."""
    return structured(RunView.of(await caller(ctx).runs.cancel(run_id)))


@answers_problems
async def list_runs(
    ctx: Context,
    task_id: Annotated[uuid.UUID | None, Field(description="Only runs of this task.")] = None,
    status: Annotated[RunStatus | None, Field(description="Only runs in this status.")] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> Annotated[CallToolResult, RunListView]:
    """The caller's runs, newest first, optionally of one task or in one status."""
    items, total = await caller(ctx).runs.list_runs(task_id=task_id, status=status, limit=limit, offset=offset)
    views = [RunView.of(run_read(item)) for item in items]
    return structured(RunListView(items=views, total=total, limit=limit, offset=offset))


@answers_problems
async def get_artifact(
    run_id: RunId,
    name: Annotated[str, Field(description="The file's name, as listed in the run's artifacts.")],
    ctx: Context,
) -> str:
    """The text of one file a run produced (code, tests, plan.json, review.md, the sandbox report)."""
    artifact = await caller(ctx).runs.get_artifact(run_id, name)
    try:
        return artifact.content.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError(f"artifact {name!r} is binary ({artifact.media_type}); read it as a resource") from None


TOOLS = (create_task, start_run, get_run, wait_run, approve_plan, reject_plan, cancel_run, list_runs, get_artifact)
