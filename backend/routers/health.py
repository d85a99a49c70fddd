"""Health probes: liveness (process only), readiness (dependencies) and a status report."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from backend import __version__
from backend.app.problems import problem_response
from backend.schemas.health import HealthRead, ReadinessRead, StatusRead
from backend.schemas.problem import error_responses
from backend.services.health import CheckResult, check_database, check_migrations, check_redis

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/", response_model=HealthRead, summary="Basic health")
async def health() -> HealthRead:
    return HealthRead(status="ok")


@router.get("/live", response_model=HealthRead, summary="Liveness: the process answers (no dependency checks)")
async def live() -> HealthRead:
    return HealthRead(status="ok")


async def _readiness_checks(request: Request) -> list[CheckResult]:
    state = request.app.state
    probes = [check_database(state.engine), check_migrations(state.engine)]
    if state.redis is not None:
        probes.append(check_redis(state.redis))
    return list(await asyncio.gather(*probes))


@router.get(
    "/ready",
    response_model=ReadinessRead,
    summary="Readiness: database reachable, schema migrated, Redis answering when configured",
    responses=error_responses(503),
)
async def ready(request: Request) -> Any:
    checks = await _readiness_checks(request)
    report = {check.name: check.as_dict() for check in checks}
    failing = [check for check in checks if not check.ok]
    if failing:
        detail = "; ".join(f"{check.name}: {check.detail}" for check in failing)
        return problem_response(request, 503, f"not ready: {detail}", slug="not-ready", extra={"checks": report})
    return ReadinessRead(status="ready", checks=report)


@router.get("/status", response_model=StatusRead, summary="Status report for operators (no secrets)")
async def status(request: Request) -> StatusRead:
    state = request.app.state
    settings = state.settings
    database = await check_database(state.engine)
    redis: dict[str, Any] = {"configured": state.redis is not None}
    if state.redis is not None:
        redis_check = await check_redis(state.redis)
        redis.update(reachable=redis_check.ok, detail=redis_check.detail, latency_ms=redis_check.as_dict().get("latency_ms"))
    degraded = not database.ok or (state.redis is not None and not redis["reachable"])
    return StatusRead(
        status="degraded" if degraded else "ok",
        service="mgx-agent-api",
        version=__version__,
        started_at=state.started_at,
        uptime_seconds=round(time.monotonic() - state.started_monotonic, 3),
        database={"dialect": settings.database_dialect, **database.as_dict()},
        cache={
            "enabled": settings.mgx_enable_caching,
            "backend": settings.mgx_cache_backend if settings.mgx_enable_caching else "none",
            "max_entries": settings.mgx_cache_max_entries,
            "ttl_seconds": settings.mgx_cache_ttl_seconds,
        },
        redis=redis,
        runner=await state.runner.queue_stats(),
        llm=state.team_provider.describe(),
    )
