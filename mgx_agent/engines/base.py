"""TeamEngine: what executing a run needs from a team, whichever engine runs it.

The run executor plans (``analyze_and_plan``), re-plans with a human's feedback
(``reject_plan``), executes an approved plan with events (``execute``, reporting through the
``EventCallback`` the engine was built with), checkpoints (``state`` after every finished phase,
also carried by each ``PhaseFinished`` event), resumes (an engine built from a saved ``state``
continues after its last finished phase), reports ``usage``/``timings``, and cancels (the
executor cancels the awaiting task; ``aclose`` then stops whatever the engine still runs).
"""

from __future__ import annotations

from typing import Any, Protocol

from mgx_agent.config import TeamConfig
from mgx_agent.parsing import Plan
from mgx_agent.team import TeamResult


class TeamEngine(Protocol):
    name: str
    config: TeamConfig

    @property
    def plan(self) -> Plan | None: ...

    @property
    def state(self) -> dict[str, Any]:
        """The JSON-ready checkpoint to resume from (the native team's state layout)."""
        ...

    def usage(self) -> dict[str, Any]: ...

    def timings(self) -> dict[str, float]: ...

    async def analyze_and_plan(self, task: str) -> Plan: ...

    async def reject_plan(self, feedback: str) -> Plan: ...

    def approve_plan(self) -> None: ...

    async def execute(self) -> TeamResult: ...

    async def aclose(self) -> None:
        """Stop and release what the engine runs (idempotent; called after every engine call)."""
        ...
