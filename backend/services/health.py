"""Dependency checks behind the health endpoints, each bounded in time so a hanging dependency
cannot hang a probe."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import READ_ONLY_OPTION
from backend.db.migrations import migration_state

CHECK_TIMEOUT_SECONDS = 1.5


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": self.ok, "detail": self.detail}
        if self.latency_ms is not None:
            result["latency_ms"] = round(self.latency_ms, 2)
        result.update(self.data)
        return result


async def _timed(name: str, probe: Any) -> CheckResult:
    started = time.perf_counter()
    try:
        detail, data = await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
    except Exception as exc:  # a probe reports every failure as a failed check, never raises
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    return CheckResult(name, True, detail, (time.perf_counter() - started) * 1000, data)


async def check_database(engine: AsyncEngine) -> CheckResult:
    async def probe() -> tuple[str, dict[str, Any]]:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{READ_ONLY_OPTION: True})
            await connection.execute(text("SELECT 1"))
        return "reachable", {"dialect": engine.dialect.name}

    return await _timed("database", probe())


async def check_migrations(engine: AsyncEngine) -> CheckResult:
    async def probe() -> tuple[str, dict[str, Any]]:
        state = await migration_state(engine)
        data = {"current": list(state.current), "head": list(state.heads)}
        if not state.at_head:
            raise RuntimeError(f"schema at {list(state.current) or 'nothing'}, code expects {list(state.heads)}")
        return "at head", data

    return await _timed("migrations", probe())


async def check_redis(client: Any) -> CheckResult:
    async def probe() -> tuple[str, dict[str, Any]]:
        await client.ping()
        return "reachable", {}

    return await _timed("redis", probe())
