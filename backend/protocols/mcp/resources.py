"""The MCP resources: a run's files and its plan, read through the run service (so a key reads
only its own runs' files). Offered as resource templates, since which runs exist depends on the
caller."""

from __future__ import annotations

import json
import uuid

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from backend.errors import NotFoundError
from backend.protocols.caller import services_for
from backend.protocols.mcp.views import ARTIFACT_URI, PLAN_URI
from backend.protocols.problems import SERVICE_ERRORS, problem_for


def _run_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ResourceNotFoundError(f"{text!r} is not a run id") from None


async def read_artifact(run_id: str, name: str, ctx: Context) -> str | bytes:
    """One file a run produced: text as text, anything else as bytes."""
    services = services_for(ctx.request_context.request)
    try:
        artifact = await services.runs.get_artifact(_run_id(run_id), name)
    except NotFoundError as error:
        raise ResourceNotFoundError(error.detail) from None
    except SERVICE_ERRORS as error:
        raise ResourceError(problem_for(error, ARTIFACT_URI)["detail"]) from None
    try:
        return artifact.content.decode("utf-8")
    except UnicodeDecodeError:
        return artifact.content


async def read_plan(run_id: str, ctx: Context) -> str:
    """The run's plan as JSON (Mike's summary, steps, files, complexity)."""
    services = services_for(ctx.request_context.request)
    try:
        run = await services.runs.get_run_read(_run_id(run_id))
    except NotFoundError as error:
        raise ResourceNotFoundError(error.detail) from None
    except SERVICE_ERRORS as error:
        raise ResourceError(problem_for(error, PLAN_URI)["detail"]) from None
    if run.plan is None:
        raise ResourceNotFoundError(f"run {run.id} has no plan yet (it is {run.status})")
    return json.dumps(run.plan, indent=2)


def register_resources(server: MCPServer) -> None:
    # {+name}: artifact names may contain slashes (src/app.py).
    server.resource(
        ARTIFACT_URI.replace("{name}", "{+name}"),
        name="run-artifact",
        title="A file a run produced",
        description="Code, tests, plan.json, review.md or sandbox-report.json of one run.",
    )(read_artifact)
    server.resource(
        PLAN_URI,
        name="run-plan",
        title="A run's plan",
        description="Mike's plan for the run, as JSON.",
        mime_type="application/json",
    )(read_plan)
