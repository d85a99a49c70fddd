"""Health probes: liveness (the process answers), readiness (it should get traffic) and a status
report for operators. Never authenticated, never rate limited; the checks live in
``services/health``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from backend.app.auth import describe_access
from backend.app.problems import problem_response
from backend.schemas.health import HealthRead, ReadinessRead, StatusRead
from backend.schemas.problem import error_responses
from backend.services import health as checks

router = APIRouter(prefix="/health", tags=["health"])

# Probe answers describe this instant; a cache or proxy must not replay them.
NO_STORE = {"Cache-Control": "no-store"}


def _secrets(request: Request) -> list[str]:
    state = request.app.state
    return checks.secret_values(state.settings, state.llm_config)


@router.get("/", response_model=HealthRead, summary="Basic health")
async def health(response: Response) -> HealthRead:
    response.headers.update(NO_STORE)
    return HealthRead(status="ok")


@router.get(
    "/live",
    response_model=HealthRead,
    summary="Liveness: the process answers",
    description=(
        "Never checks a dependency: a database or Redis outage must not get healthy processes "
        "restarted. Use it for liveness and startup probes and the container health check."
    ),
)
async def live(response: Response) -> HealthRead:
    response.headers.update(NO_STORE)
    return HealthRead(status="ok")


@router.get(
    "/ready",
    response_model=ReadinessRead,
    summary="Readiness: the process should receive traffic",
    description=(
        "200 when the database answers, its schema is at the migration head, Redis answers (when "
        "configured), the runner is claiming runs and the process is not shutting down. Otherwise "
        "503 problem+json whose `detail` names each failing check and whose `checks` has them all. "
        "The checks run concurrently and the answer comes within 2 s even when a dependency hangs. "
        "From SIGTERM on, it answers 503 (`shutdown`) at once while in-flight work drains."
    ),
    responses=error_responses(503),
)
async def ready(request: Request) -> Any:
    state = request.app.state
    result = await checks.readiness(
        engine=state.probe_engine,
        redis=state.redis,
        runner=state.runner,
        draining=state.shutdown.draining,
        secrets=_secrets(request),
    )
    if not result.ready:
        detail = "; ".join(f"{check.name}: {check.detail}" for check in result.failing)
        return problem_response(
            request,
            503,
            f"not ready: {detail}",
            slug="not-ready",
            extra={"checks": result.report()},
            headers=NO_STORE,
        )
    return ReadinessRead(status="ready", checks=result.report())


@router.get(
    "/status",
    response_model=StatusRead,
    summary="Status report for operators (no secrets)",
    description=(
        "Dependencies, runner queue, live event subscribers, cache counters, LLM provider (`demo` "
        "when none is configured), versions, uptime and whether the process is draining. Bounded "
        "in time like `/health/ready`; a dependency that does not answer shows as such."
    ),
)
async def status(request: Request, response: Response) -> StatusRead:
    state = request.app.state
    response.headers.update(NO_STORE)
    report = await checks.status_report(
        settings=state.settings,
        engine=state.probe_engine,
        redis=state.redis,
        runner=state.runner,
        events=state.events,
        provider=state.team_provider,
        draining=state.shutdown.draining,
        started_at=state.started_at,
        uptime_seconds=time.monotonic() - state.started_monotonic,
        secrets=_secrets(request),
    )
    return StatusRead.model_validate({**report, "auth": describe_access(state.key_ring)})
