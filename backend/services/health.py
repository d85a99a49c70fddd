"""The checks behind the health endpoints and the operator status report.

Invariant: a probe answers within ``PROBE_DEADLINE_SECONDS`` whatever its dependencies do. The
checks run concurrently under one deadline, and a check still running at the deadline is
reported as failed and cancelled without being awaited, so a dependency that accepts a
connection and never answers (or a driver whose cancellation itself hangs) cannot hold the
answer. Nothing here returns a secret: the report carries no URL with credentials, and every
detail text is scrubbed of the configured secret values.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend import __version__
from backend.db.engine import READ_ONLY_OPTION
from backend.db.migrations import migration_state

if TYPE_CHECKING:
    from mgx_agent.llm import LLMConfig

    from backend.config import Settings
    from backend.services.background import BackgroundTaskRunner
    from backend.services.events import EventBroadcaster
    from backend.services.team_provider import MGXTeamProvider

# Kubernetes and load balancers usually give a probe 2-3 s; answer well inside that.
PROBE_DEADLINE_SECONDS = 1.5
REDACTED = "***"
# Shorter pieces of a list-like secret are names or flags (``ci``, ``admin``), not keys.
MIN_SECRET_PART = 8
_VERSIONED_PACKAGES = ("fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn")
# Cancelled checks that have not finished yet; kept referenced so they are not collected mid-flight.
_abandoned: set[asyncio.Task[Any]] = set()

Probe = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]


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


async def _timed(name: str, probe: Probe) -> CheckResult:
    started = time.perf_counter()
    try:
        detail, data = await probe()
    except Exception as exc:  # a probe reports every failure as a failed check, never raises
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    return CheckResult(name, True, detail, (time.perf_counter() - started) * 1000, data)


async def run_checks(probes: Mapping[str, Probe], deadline: float = PROBE_DEADLINE_SECONDS) -> list[CheckResult]:
    """Run ``probes`` concurrently; whatever has not answered after ``deadline`` seconds fails."""
    tasks = {name: asyncio.create_task(_timed(name, probe), name=f"health-{name}") for name, probe in probes.items()}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=deadline)
    results = []
    for name, task in tasks.items():
        if task.done():
            results.append(task.result())
            continue
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_abandoned.discard)
        results.append(CheckResult(name, False, f"no answer within {deadline:g}s"))
    return results


# Below this much free space a SQLite database fails its writes ("database or disk is full").
MIN_FREE_DISK_BYTES = 16 * 1024 * 1024


def database_probe(engine: AsyncEngine) -> Probe:
    """Reachable and writable: a database that answers SELECT 1 but refuses every write (a
    read-only file or standby, a full disk) is not ready, and the detail says why."""

    async def probe() -> tuple[str, dict[str, Any]]:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{READ_ONLY_OPTION: True})
            if engine.dialect.name == "postgresql":
                read_only = (await connection.execute(text("SELECT current_setting('transaction_read_only')"))).scalar()
                if read_only == "on":
                    raise RuntimeError("the database is read-only (a standby, or default_transaction_read_only)")
            else:
                await connection.execute(text("SELECT 1"))
        if engine.dialect.name == "sqlite":
            _check_sqlite_writable(engine.url.database)
        return "reachable and writable", {}

    return probe


def _check_sqlite_writable(database: str | None) -> None:
    if not database or database == ":memory:":
        return
    path = Path(database)
    # WAL mode writes the -wal and -shm files beside the database: the directory must be writable.
    for target, what in ((path, "database file"), (path.parent, "database directory")):
        if target.exists() and not os.access(target, os.W_OK):
            raise RuntimeError(f"the {what} {target} is read-only: writes fail with 'attempt to write a readonly database'")
    free = shutil.disk_usage(path.parent).free
    if free < MIN_FREE_DISK_BYTES:
        raise RuntimeError(f"the disk of {path.parent} is full ({free // 1024} KiB free): writes fail with 'database or disk is full'")


def migrations_probe(engine: AsyncEngine) -> Probe:
    async def probe() -> tuple[str, dict[str, Any]]:
        state = await migration_state(engine)
        if not state.at_head:
            raise RuntimeError(f"schema at {list(state.current) or 'nothing'}, code expects {list(state.heads)}")
        return "at head", {"current": list(state.current), "head": list(state.heads)}

    return probe


def redis_probe(client: Any) -> Probe:
    async def probe() -> tuple[str, dict[str, Any]]:
        await client.ping()
        return "reachable", {}

    return probe


def runner_check(started: bool, stopping: bool) -> CheckResult:
    if not started:
        return CheckResult("runner", False, "not started")
    if stopping:
        return CheckResult("runner", False, "stopping: no longer claims runs")
    return CheckResult("runner", True, "started")


def shutdown_check(draining: bool) -> CheckResult:
    if draining:
        return CheckResult("shutdown", False, "draining: the process is shutting down")
    return CheckResult("shutdown", True, "serving")


# Status report helpers


def versions() -> dict[str, str]:
    found = {"service": __version__, "python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def url_without_credentials(url: str | None) -> str | None:
    """``url`` without user info and with any query string replaced (keys travel in both)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "", ""))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of a secret replaced (exception messages may quote them)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def secret_values(settings: Settings, llm_config: LLMConfig | None = None) -> list[str]:
    """Every configured secret: ``SecretStr`` settings whole, the passwords inside URLs, and the
    parts of list-like secrets (``API_KEYS``' ``name:key`` entries) long enough to be keys."""
    found: list[str] = []
    for source in (settings, llm_config):
        if source is None:
            continue
        for _, value in source:
            if not hasattr(value, "get_secret_value"):
                continue
            raw = str(value.get_secret_value())
            found.append(raw)
            if "://" in raw:
                found.append(urlsplit(raw).password or "")
            else:
                parts = (part.strip() for entry in raw.split(",") for part in entry.split(":"))
                found.extend(part for part in parts if len(part) >= MIN_SECRET_PART)
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


# Reports


@dataclass
class Readiness:
    checks: list[CheckResult]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.ok]

    def report(self) -> dict[str, dict[str, Any]]:
        return {check.name: check.as_dict() for check in self.checks}


async def readiness(
    *,
    engine: AsyncEngine,
    redis: Any | None,
    runner: BackgroundTaskRunner,
    draining: bool,
    secrets: Iterable[str] = (),
) -> Readiness:
    """Ready means: not shutting down, runner claiming, database reachable and at the migration
    head, Redis answering when configured. A draining process answers at once, without probing."""
    local = [shutdown_check(draining), runner_check(runner.started, runner.stopping)]
    if draining:
        return Readiness(local)
    probes: dict[str, Probe] = {"database": database_probe(engine), "migrations": migrations_probe(engine)}
    if redis is not None:
        probes["redis"] = redis_probe(redis)
    checks = [*await run_checks(probes), *local]
    return Readiness(_scrubbed(checks, secrets))


async def database_problem(engine: AsyncEngine, secrets: Iterable[str] = ()) -> str | None:
    """Why the database cannot serve the API (unreachable, unknown role or database, schema not
    migrated, read-only), in one line for the start-up log; None when it can."""
    checks = await run_checks({"database": database_probe(engine), "migrations": migrations_probe(engine)})
    failing = [check for check in _scrubbed(checks, secrets) if not check.ok]
    if not failing:
        return None
    return "; ".join(f"{check.name}: {check.detail}" for check in failing)


def _scrubbed(checks: list[CheckResult], secrets: Iterable[str]) -> list[CheckResult]:
    secrets = list(secrets)
    for check in checks:
        check.detail = scrub(check.detail, secrets)
    return checks


async def status_report(
    *,
    settings: Settings,
    engine: AsyncEngine,
    redis: Any | None,
    runner: BackgroundTaskRunner,
    events: EventBroadcaster,
    provider: MGXTeamProvider,
    draining: bool,
    started_at: datetime,
    uptime_seconds: float,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """What an operator wants on one page; no secret (see the module docstring)."""

    async def runner_stats() -> tuple[str, dict[str, Any]]:
        return "ok", await runner.queue_stats()

    probes: dict[str, Probe] = {
        "database": database_probe(engine),
        "migrations": migrations_probe(engine),
        "runner": runner_stats,
    }
    if redis is not None:
        probes["redis"] = redis_probe(redis)
    checks = {check.name: check for check in _scrubbed(await run_checks(probes), secrets)}

    database, migrations, queue = checks["database"], checks["migrations"], checks["runner"]
    runner_report = dict(queue.data) if queue.ok else runner.local_stats() | {"queue_error": queue.detail}
    runner_report["draining"] = draining
    redis_report: dict[str, Any] = {"configured": redis is not None}
    if redis is not None:
        redis_check = checks["redis"]
        redis_report.update(
            reachable=redis_check.ok, detail=redis_check.detail, latency_ms=redis_check.as_dict().get("latency_ms")
        )
    degraded = not database.ok or not migrations.ok or (redis is not None and not redis_report["reachable"])
    llm = dict(provider.describe())
    llm["base_url"] = url_without_credentials(llm.get("base_url"))
    cache_stats = llm.pop("cache", None) or {}
    return {
        "status": "draining" if draining else "degraded" if degraded else "ok",
        "service": "mgx-agent-api",
        "version": __version__,
        "versions": versions(),
        "started_at": started_at,
        "uptime_seconds": round(uptime_seconds, 3),
        "draining": draining,
        "database": {"dialect": settings.database_dialect, **database.as_dict()},
        "migrations": migrations.as_dict(),
        "cache": {
            "enabled": settings.mgx_enable_caching,
            "backend": settings.mgx_cache_backend if settings.mgx_enable_caching else "none",
            "max_entries": settings.mgx_cache_max_entries,
            "ttl_seconds": settings.mgx_cache_ttl_seconds,
            **cache_stats,
        },
        "redis": redis_report,
        "runner": runner_report,
        "events": {"subscribers": events.subscriber_count, "relay": events.relay},
        "llm": llm,
        "sandbox": provider.sandbox_status,
        "engines": provider.engines_status,
    }
