"""The progress events a team emits while it works.

Each event is a small frozen dataclass with a ``type`` string that matches the event names of
the service (DESIGN.md section 2), so the backend can persist and fan them out without
translation. ``to_dict()`` gives the JSON-ready payload (``type`` included).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from mgx_agent.metrics import LLMCall

PHASES = ("planning", "coding", "testing", "verifying", "reviewing", "revising")


@dataclass(frozen=True)
class TeamEvent:
    type: ClassVar[str] = "team.event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class PhaseStarted(TeamEvent):
    type: ClassVar[str] = "run.phase"
    phase: str
    round: int = 0


@dataclass(frozen=True)
class PhaseFinished(TeamEvent):
    """A phase finished; ``checkpoint`` is the team state to resume from after it."""

    type: ClassVar[str] = "run.phase_finished"
    phase: str
    seconds: float
    checkpoint: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanReady(TeamEvent):
    type: ClassVar[str] = "run.plan_ready"
    plan: dict[str, Any]


@dataclass(frozen=True)
class AgentMessage(TeamEvent):
    """What a role said; ``llm`` is the model call that produced it (None for a human's words).

    ``content`` is the answer the team parsed; ``reasoning`` is the model's thinking, kept for
    whoever reads the log and never put into a later prompt.
    """

    type: ClassVar[str] = "agent.message"
    role: str
    action: str
    content: str
    llm: LLMCall | None = None
    reasoning: str | None = None


@dataclass(frozen=True)
class RunLog(TeamEvent):
    """A line for the run's log: something the team repaired or retried on the way."""

    type: ClassVar[str] = "run.log"
    level: str  # "info" | "warning"
    message: str
    role: str | None = None


@dataclass(frozen=True)
class AgentDelta(TeamEvent):
    type: ClassVar[str] = "agent.delta"
    role: str
    text: str


@dataclass(frozen=True)
class UsageUpdated(TeamEvent):
    type: ClassVar[str] = "run.usage"
    usage: dict[str, Any]


@dataclass(frozen=True)
class ArtifactProduced(TeamEvent):
    type: ClassVar[str] = "artifact.created"
    name: str
    media_type: str
    content: str


@dataclass(frozen=True)
class SandboxResult(TeamEvent):
    type: ClassVar[str] = "sandbox.result"
    report: dict[str, Any]


EventCallback = Callable[[TeamEvent], Awaitable[None]]
