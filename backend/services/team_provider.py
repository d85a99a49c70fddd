"""MGXTeamProvider: builds a fresh team engine per run from the service settings, the task's
config and the run's overrides: the native MGXStyleTeam, or the metagpt engine out of process
(``config.engine``). The LLM client (one HTTP connection pool) and the response cache are
shared by every run of the process; usage, budget and team state never are."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mgx_agent.cache import ResponseCache, build_response_cache
from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.engines.base import TeamEngine
from mgx_agent.engines.native import NativeEngine
from mgx_agent.engines.out_of_process import OutOfProcessEngine, metagpt_command, probe_worker
from mgx_agent.events import EventCallback
from mgx_agent.llm import LLMConfig, LLMSession, build_llm_client, build_price_table
from mgx_agent.sandbox import sandbox_status
from mgx_agent.team import TeamResult

from backend.config import Settings

logger = logging.getLogger("backend.team")

# Task config keys the backend keeps for itself rather than passing to the team.
BACKEND_ONLY_KEYS = frozenset({"allow_concurrent_runs"})


def sandbox_config(settings: Settings) -> SandboxConfig:
    return SandboxConfig(
        mode=settings.mgx_sandbox,
        timeout_seconds=settings.mgx_sandbox_timeout_seconds,
        memory_mb=settings.mgx_sandbox_memory_mb,
        max_processes=settings.mgx_sandbox_max_processes,
        disk_mb=settings.mgx_sandbox_disk_mb,
        bwrap_path=settings.mgx_sandbox_bwrap,
        uid=settings.mgx_sandbox_uid,
    )


class MGXTeamProvider:
    def __init__(self, settings: Settings, llm_config: LLMConfig | None = None) -> None:
        self.settings = settings
        self.llm_config = llm_config or LLMConfig()
        self.client = build_llm_client(self.llm_config)
        self.prices = build_price_table(self.llm_config)
        self.base_config = TeamConfig(
            max_rounds=settings.mgx_max_rounds,
            max_revision_rounds=settings.mgx_max_revision_rounds,
            max_memory_size=settings.mgx_max_memory_size,
            enable_caching=settings.mgx_enable_caching,
            cache_backend=settings.mgx_cache_backend,
            cache_max_entries=settings.mgx_cache_max_entries,
            cache_ttl_seconds=settings.mgx_cache_ttl_seconds,
            sandbox=sandbox_config(settings),
            engine=settings.mgx_engine,
        )
        self.sandbox_status: dict[str, Any] = {"mode": settings.mgx_sandbox, "backend": "not probed"}
        self.metagpt = metagpt_command(settings.mgx_metagpt_python or "")
        self.engines_status: dict[str, Any] = {
            "default": settings.mgx_engine,
            "native": {"available": True},
            "metagpt": {"available": None, "reason": "not probed yet"},
        }
        self._engine_probe: asyncio.Task[None] | None = None
        self.cache: ResponseCache | None = None
        if settings.mgx_enable_caching:
            redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
            self.cache = build_response_cache(
                settings.mgx_cache_backend,
                max_entries=settings.mgx_cache_max_entries,
                ttl_seconds=settings.mgx_cache_ttl_seconds,
                redis_url=redis_url,
            )

    @property
    def provider(self) -> str:
        return self.client.provider

    async def check_sandbox(self) -> dict[str, Any]:
        """Probe the sandbox once (off the event loop) and keep what operators are shown."""
        self.sandbox_status = await asyncio.to_thread(sandbox_status, self.base_config.sandbox)
        return self.sandbox_status

    def start_engine_probe(self) -> None:
        """Check the metagpt worker's interpreter in the background (importing MetaGPT takes
        seconds); /health/status shows the answer once it is in."""

        async def probe() -> None:
            self.engines_status["metagpt"] = {"available": None, "reason": "probing"}
            found = await probe_worker(self.metagpt)
            if found["available"] and not self.llm_config.is_configured:
                found["note"] = "needs an OpenAI-compatible provider (MGX_LLM_BASE_URL); the demo model is native only"
            self.engines_status["metagpt"] = found
            logger.log(
                logging.INFO if found["available"] or not self.settings.mgx_metagpt_python else logging.WARNING,
                "engine metagpt: %s",
                f"MetaGPT {found.get('version')} at {found.get('interpreter')}" if found["available"] else found["reason"],
            )

        self._engine_probe = asyncio.create_task(probe(), name="metagpt-engine-probe")

    def describe(self) -> dict[str, Any]:
        """What operators see in /health/status: never the API key."""
        description: dict[str, Any] = {**self.llm_config.describe(), "demo": self.provider == "demo"}
        if self.provider == "demo":
            description.update(
                model="mgx-demo", note="offline demo model: no LLM provider configured (set MGX_LLM_BASE_URL)"
            )
        if self.cache is not None:
            description["cache"] = self.cache.stats()
        return description

    def team_config(self, task_config: dict[str, Any], overrides: dict[str, Any]) -> TeamConfig:
        merged = {
            key: value for key, value in {**task_config, **overrides}.items() if key not in BACKEND_ONLY_KEYS
        }
        if merged.get("models"):
            merged.setdefault("use_multi_llm", True)
        return self.base_config.with_task_overrides(merged)

    def build_team(
        self,
        config: TeamConfig,
        *,
        run_label: str,
        on_event: EventCallback | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> TeamEngine:
        if config.engine == "metagpt":
            return OutOfProcessEngine(
                self.metagpt,
                config,
                self.llm_config,
                prices=self.prices,
                run_label=run_label,
                on_event=on_event,
                checkpoint=checkpoint,
            )
        session = LLMSession(
            self.client,
            default_model=self.llm_config.model if self.provider != "demo" else "mgx-demo",
            role_models=config.role_models(),
            budget_usd=config.budget_usd,
            cache=self.cache if config.enable_caching else None,
            prices=self.prices,
            run_label=run_label,
            temperature=self.llm_config.temperature,
            max_tokens=self.llm_config.max_tokens,
        )
        return NativeEngine(config, session, on_event, checkpoint)

    async def run_task(
        self, task: str, *, config: dict[str, Any] | None = None, on_event: EventCallback | None = None
    ) -> TeamResult:
        """Plan, approve and execute ``task`` in one call (no human in the loop)."""
        team_config = self.team_config(config or {}, {"auto_approve_plan": True})
        team = self.build_team(team_config, run_label="direct", on_event=on_event)
        try:
            await team.analyze_and_plan(task)
            team.approve_plan()
            return await team.execute()
        finally:
            await team.aclose()

    async def aclose(self) -> None:
        if self._engine_probe is not None:
            self._engine_probe.cancel()
        await self.client.aclose()
        if self.cache is not None:
            await self.cache.aclose()
