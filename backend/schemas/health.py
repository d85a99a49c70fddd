"""Health endpoint response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class HealthRead(BaseModel):
    status: str = Field(examples=["ok"])


class CheckRead(BaseModel):
    ok: bool
    detail: str
    latency_ms: float | None = None


class ReadinessRead(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, dict[str, Any]]


class StatusRead(BaseModel):
    status: str = Field(description="`ok` when every configured dependency answers, else `degraded`.")
    service: str
    version: str
    started_at: datetime
    uptime_seconds: float
    database: dict[str, Any]
    cache: dict[str, Any]
    redis: dict[str, Any]
    runner: dict[str, Any] = Field(description="Workers, queue depth, running runs, oldest queued age.")
    llm: dict[str, Any] = Field(description="LLM provider; `demo` means the offline demo model.")


class ServiceInfoRead(BaseModel):
    name: str
    version: str
    description: str
    docs: str
    redoc: str
    openapi: str
    health: str
