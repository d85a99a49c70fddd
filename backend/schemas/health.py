"""Health endpoint response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HealthRead(BaseModel):
    status: str = Field(examples=["ok"])


class CheckRead(BaseModel):
    ok: bool
    detail: str
    latency_ms: float | None = None


class ReadinessRead(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, dict[str, Any]]


class VersionsRead(BaseModel):
    model_config = ConfigDict(extra="allow")

    service: str
    python: str
    fastapi: str | None = None
    sqlalchemy: str | None = None


class StatusRead(BaseModel):
    status: str = Field(
        description="`ok` when every dependency answers, `degraded` when one does not, `draining` while shutting down."
    )
    service: str
    version: str
    versions: VersionsRead = Field(description="The service's version and those of Python and its main libraries.")
    started_at: datetime
    uptime_seconds: float
    draining: bool = Field(description="True from SIGTERM on: readiness is 503 and in-flight work is finishing.")
    database: dict[str, Any]
    migrations: dict[str, Any] = Field(description="Schema revision against the code's migration head.")
    cache: dict[str, Any] = Field(description="LLM response cache: backend, limits, hits/misses (and entries for memory).")
    redis: dict[str, Any]
    runner: dict[str, Any] = Field(
        description="Workers, queue depth, running runs, oldest queued age, runs executing here, draining."
    )
    events: dict[str, Any] = Field(description="Live event subscribers (SSE and WebSocket) and how events of other processes arrive.")
    llm: dict[str, Any] = Field(description="LLM provider; `demo` means the offline demo model.")
    sandbox: dict[str, Any] = Field(
        description=(
            "Where generated tests run: `backend` (`bubblewrap`, `unsafe-subprocess`, `off` or "
            "`unavailable` with `reason` and `fix`), what is isolated (filesystem, network, pid "
            "namespace, /proc, host uid), the per-run limits and whether the test runner (pytest) "
            "is importable inside the sandbox."
        )
    )
    engines: dict[str, Any] = Field(
        description=(
            "Engines that can run a team: `default` (MGX_ENGINE), `native` (always available) and "
            "`metagpt` (`available`, with MetaGPT's `version` and `interpreter`, or the `reason` it "
            "is not; `null` while the interpreter is being probed)."
        )
    )
    auth: dict[str, Any] = Field(
        description="`{\"mode\": \"open\"}` without `API_KEYS`, else `api_keys` with how many keys (never a key)."
    )


class ServiceInfoRead(BaseModel):
    name: str
    version: str
    description: str
    docs: str
    redoc: str
    openapi: str
    health: str
    console: str = Field(description="The web console: follow runs live, approve plans, read the code.")
