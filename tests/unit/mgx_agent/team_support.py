"""Building a team over the fake LLM server for the team tests."""

from __future__ import annotations

from mgx_agent.cache import ResponseCache
from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.events import TeamEvent
from mgx_agent.llm import OpenAICompatibleClient
from mgx_agent.team import MGXStyleTeam, build_team_session


def make_team(
    client: OpenAICompatibleClient,
    events: list[TeamEvent] | None = None,
    sandbox: str = "off",
    cache: ResponseCache | None = None,
    run_label: str = "run-test",
    max_tokens: int | None = None,
    **config: object,
) -> MGXStyleTeam:
    async def collect(event: TeamEvent) -> None:
        if events is not None:
            events.append(event)

    team_config = TeamConfig(sandbox=SandboxConfig(mode=sandbox, timeout_seconds=20), **config)
    session = build_team_session(
        team_config, client, default_model="gpt-4o-mini", run_label=run_label, cache=cache,
        max_tokens=max_tokens,
    )
    return MGXStyleTeam(team_config, session, on_event=collect)
