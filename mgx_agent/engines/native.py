"""The native engine: ``MGXStyleTeam`` in this process, behind the ``TeamEngine`` interface."""

from __future__ import annotations

from typing import Any

from mgx_agent.config import TeamConfig
from mgx_agent.events import EventCallback
from mgx_agent.llm.session import LLMSession
from mgx_agent.parsing import Plan
from mgx_agent.team import MGXStyleTeam, TeamResult


class NativeEngine:
    name = "native"

    def __init__(
        self,
        config: TeamConfig,
        session: LLMSession,
        on_event: EventCallback | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        if checkpoint:
            self.team = MGXStyleTeam.from_state(checkpoint, config, session, on_event)
        else:
            self.team = MGXStyleTeam(config, session, on_event)

    @property
    def plan(self) -> Plan | None:
        return self.team.plan

    @property
    def state(self) -> dict[str, Any]:
        return self.team.state

    def usage(self) -> dict[str, Any]:
        return self.team.llm.usage.to_dict()

    def timings(self) -> dict[str, float]:
        return self.team.timings.to_dict()

    async def analyze_and_plan(self, task: str) -> Plan:
        return await self.team.analyze_and_plan(task)

    async def reject_plan(self, feedback: str) -> Plan:
        return await self.team.reject_plan(feedback)

    def approve_plan(self) -> None:
        self.team.approve_plan()

    async def execute(self) -> TeamResult:
        return await self.team.execute()

    async def aclose(self) -> None:
        """Nothing runs outside the awaiting task: cancelling it stopped the team."""
