"""The transport-independent contract between the team and a language model.

The team talks to an ``LLMSession`` (one per run: usage, budget, cache), which talks to an
``LLMClient`` (one per provider, shared by every run in the process).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from mgx_agent.metrics import LLMCall

# A chat message in the OpenAI shape: {"role": "system"|"user"|"assistant", "content": "..."}.
ChatMessage = dict[str, str]

# Receives live token deltas while a streamed completion arrives.
DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class CallContext:
    """Who is calling: sent to the provider as headers so logs and fakes can tell calls apart."""

    role: str  # "mike" | "alex" | "bob" | "charlie"
    action: str  # "AnalyzeTask" | "DraftPlan" | "WriteCode" | "WriteTest" | "ReviewCode"
    run_label: str = ""  # opaque id of the run (the backend passes the run id)


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the provider sent no usage and the counts are the client's own estimate.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class LLMResponse:
    content: str
    model: str
    provider: str  # "openai" (any OpenAI-compatible endpoint) | "demo"
    usage: TokenUsage = field(default_factory=TokenUsage)
    cached: bool = False
    # The model's thinking, kept out of ``content``: for the run's log, never for a prompt.
    reasoning: str = ""
    # As the provider reported it: "stop", "length" (cut off at the token limit), ...
    finish_reason: str | None = None
    # Things the client repaired on the way (say, invalid UTF-8 replaced), for the run's log.
    warnings: tuple[str, ...] = ()
    # Filled in by the LLMSession that priced the call; clients leave it None.
    call: LLMCall | None = None
    # Set by the LLMSession when the call may be cached once its action accepts the reply.
    cache_key: str | None = None


class LLMClient(Protocol):
    """One provider connection, safe to share between concurrent runs."""

    provider: str

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        context: CallContext,
        on_delta: DeltaCallback | None = None,
    ) -> LLMResponse: ...

    async def aclose(self) -> None: ...
