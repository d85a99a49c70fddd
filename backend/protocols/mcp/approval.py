"""Asking the human to approve a plan through MCP's own way of asking the user: elicitation.

On a 2026-07-28 connection the question is returned from the call (``InputRequiredResult``) and
the client retries the same call with the answer; on an older, handshake-era session the server
sends ``elicitation/create`` mid-call. Either way the answer is applied through the same
``RunService.approve``/``reject`` the REST API uses. A client that declared no form elicitation
is never asked: it approves with the ``approve_plan`` tool.

Each question is keyed by a digest of the plan it shows, so an answer is only ever applied to the
plan the human saw (never to one re-planned in between).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp.types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from backend.schemas.runs import RunApprove, RunRead, RunReject
from backend.services.runs import RunService

PLAN_PREVIEW_CHARACTERS = 4000


class PlanDecision(BaseModel):
    """The form the human fills in (flat and primitive, as elicitation requires)."""

    decision: Literal["approve", "reject"] = Field(description="Approve the plan, or reject it.")
    feedback: str = Field("", description="Rejecting: what to change. With feedback the plan is re-drafted.")


def client_can_elicit(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # An empty elicitation capability (older clients) means form mode.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def question_key(run: RunRead) -> str:
    digest = hashlib.sha256(json.dumps(run.plan, sort_keys=True, default=str).encode()).hexdigest()
    return f"approve-plan-{digest[:16]}"


def question_text(run: RunRead) -> str:
    plan = run.plan or {}
    summary = plan.get("summary") or "(no summary)"
    body = json.dumps(plan, indent=2, default=str)
    if len(body) > PLAN_PREVIEW_CHARACTERS:
        body = body[:PLAN_PREVIEW_CHARACTERS] + "\n... (the whole plan is in the run's plan resource)"
    return (
        f"Mike's plan for run {run.number} of task {run.task_id} waits for your approval.\n\n"
        f"Summary: {summary}\n\n{body}\n\nApprove it, or reject it with what to change."
    )


def question(run: RunRead) -> ElicitRequest:
    return ElicitRequest(
        params=ElicitRequestFormParams(
            message=question_text(run), requested_schema=PlanDecision.model_json_schema()
        )
    )


def is_modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


async def apply_decision(runs: RunService, run: RunRead, decision: PlanDecision) -> RunRead:
    if decision.decision == "approve":
        return await runs.approve(run.id, RunApprove(comment=decision.feedback or None))
    feedback = decision.feedback.strip() or None
    return await runs.reject(run.id, RunReject(feedback=feedback, replan=feedback is not None))


class PlanApproval:
    """One tool call's dealings with the human about plans: what was answered on this call (a
    retry carries earlier answers), so a plan the human declined to decide is not asked again."""

    def __init__(self, ctx: Context, runs: RunService) -> None:
        self.ctx = ctx
        self.runs = runs
        self.answered: set[str] = set()

    async def apply_answers(self, run: RunRead) -> RunRead:
        """Apply an answer this retry carries for the plan ``run`` waits on."""
        key = question_key(run)
        answer = (self.ctx.input_responses or {}).get(key)
        if not isinstance(answer, ElicitResult):
            return run
        self.answered.add(key)
        if answer.action != "accept" or answer.content is None:
            return run
        return await apply_decision(self.runs, run, PlanDecision.model_validate(answer.content))

    async def ask(self, run: RunRead) -> RunRead | InputRequiredResult:
        """Ask about ``run``'s plan when the client can be asked and it was not answered on this
        call; the run after the answer, the question to return (2026-07-28), or ``run`` as it is."""
        key = question_key(run)
        if key in self.answered or not client_can_elicit(self.ctx):
            return run
        if is_modern(self.ctx):
            return InputRequiredResult(input_requests={key: question(run)})
        self.answered.add(key)
        result: Any = await self.ctx.elicit(question_text(run), PlanDecision)
        if result.action != "accept":
            return run
        return await apply_decision(self.runs, run, result.data)
