"""Usage, cost and timing figures of one run.

``RunUsage`` counts tokens, cost, LLM calls and cache hits per role (the LLM session feeds it);
``RunTimings`` records wall-clock seconds per phase (the team feeds it); ``LLMCall`` is one
chat turn's share, reported with each agent message. Usage and timings turn into
JSON-ready dicts for the run row and ``run.usage`` events, and can be rebuilt from those dicts
so a resumed run keeps counting from where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Type-only: importing mgx_agent.llm at runtime would be circular (the session imports us).
    from mgx_agent.llm.base import TokenUsage

# Cost is stored with more precision than a cent: one small call can cost $0.00002.
COST_DECIMALS = 8


@dataclass
class RoleUsage:
    """What one role (or the whole run, for ``RunUsage.total``) consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    llm_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    # False once any call used a model missing from the price table: cost_usd is then a floor.
    cost_known: bool = True
    # Calls whose token counts were estimated (the provider sent no usage).
    estimated_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: RoleUsage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.llm_calls += other.llm_calls
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.cost_known = self.cost_known and other.cost_known
        self.estimated_calls += other.estimated_calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, COST_DECIMALS),
            "cost_known": self.cost_known,
            "estimated": self.estimated_calls > 0,
            "estimated_calls": self.estimated_calls,
            "llm_calls": self.llm_calls,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoleUsage:
        return cls(
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            llm_calls=int(data.get("llm_calls", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            cache_misses=int(data.get("cache_misses", 0)),
            cost_known=bool(data.get("cost_known", True)),
            estimated_calls=int(data.get("estimated_calls", 0)),
        )


@dataclass(frozen=True)
class LLMCall:
    """One chat turn as the run's session accounted it: the model that answered, its tokens and
    cost (zero for a cache hit, where no call was made), and the cache outcome: ``"hit"``,
    ``"miss"``, or None when the run does not cache."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    cache: str | None = None
    # True when the provider sent no usage and the token counts are estimates.
    estimated: bool = False


@dataclass
class RunUsage:
    """Usage of one run, per role; ``total`` is always derived, never stored separately."""

    roles: dict[str, RoleUsage] = field(default_factory=dict)

    def role(self, role: str) -> RoleUsage:
        usage = self.roles.get(role)
        if usage is None:
            usage = self.roles[role] = RoleUsage()
        return usage

    @property
    def total(self) -> RoleUsage:
        total = RoleUsage()
        for usage in self.roles.values():
            total.add(usage)
        return total

    def record_call(self, role: str, tokens: TokenUsage, cost_usd: float, cost_known: bool) -> None:
        usage = self.role(role)
        usage.prompt_tokens += tokens.prompt_tokens
        usage.completion_tokens += tokens.completion_tokens
        usage.cost_usd += cost_usd
        usage.llm_calls += 1
        usage.cost_known = usage.cost_known and cost_known
        if tokens.estimated:
            usage.estimated_calls += 1

    def record_cache_hit(self, role: str) -> None:
        self.role(role).cache_hits += 1

    def record_cache_miss(self, role: str) -> None:
        self.role(role).cache_misses += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.to_dict(),
            "roles": {name: usage.to_dict() for name, usage in sorted(self.roles.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunUsage:
        roles = (data or {}).get("roles") or {}
        return cls(roles={name: RoleUsage.from_dict(values) for name, values in roles.items()})


@dataclass
class PhaseTimer:
    """One timed span; ``seconds`` is final once the ``with`` block has exited."""

    phase: str
    started_at: float
    seconds: float = 0.0


class RunTimings:
    """Wall-clock seconds per phase; a phase entered twice (revision rounds) accumulates."""

    def __init__(self, seconds: Mapping[str, float] | None = None) -> None:
        self._seconds: dict[str, float] = dict(seconds or {})

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseTimer]:
        timer = PhaseTimer(phase=name, started_at=time.perf_counter())
        try:
            yield timer
        finally:
            # Recorded on failure and cancellation too: the time was spent either way.
            timer.seconds = time.perf_counter() - timer.started_at
            self.record(name, timer.seconds)

    def record(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def seconds(self, name: str) -> float:
        return self._seconds.get(name, 0.0)

    @property
    def total_seconds(self) -> float:
        return sum(self._seconds.values())

    def to_dict(self) -> dict[str, float]:
        return {name: round(value, 6) for name, value in self._seconds.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunTimings:
        return cls({name: float(value) for name, value in (data or {}).items()})
