"""LLMSession: one run's view of the language model - model choice, budget, cache and usage.

A session belongs to exactly one run and is never shared, so its usage counters need no
locking; the client and the cache behind it are shared by every run in the process.

Every reply leaves the session with its reasoning split off (``reasoning.py``) and a cut-off
reply raised as ``LLMTruncatedError`` after its tokens were counted. Nothing is cached here
on the way through: the action that asked calls ``accept`` once it has parsed and validated
the reply, and ``discard`` when a reply served from the cache turns out unusable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mgx_agent.cache import CachedCompletion, ResponseCache, cache_key
from mgx_agent.errors import BudgetExceededError, LLMTruncatedError
from mgx_agent.llm.base import (
    CallContext,
    ChatMessage,
    DeltaCallback,
    LLMClient,
    LLMResponse,
    TokenUsage,
)
from mgx_agent.llm.pricing import PriceTable
from mgx_agent.llm.reasoning import split_reasoning
from mgx_agent.metrics import COST_DECIMALS, LLMCall, RunUsage


class LLMSession:
    def __init__(
        self,
        client: LLMClient,
        *,
        default_model: str,
        role_models: dict[str, str] | None = None,
        budget_usd: float | None = None,
        cache: ResponseCache | None = None,
        prices: PriceTable | None = None,
        run_label: str = "",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> None:
        if budget_usd is not None and budget_usd <= 0:
            raise ValueError("budget_usd must be positive when given")
        self.client = client
        self.default_model = default_model
        self.role_models = {role.lower(): model for role, model in (role_models or {}).items()}
        self.budget_usd = budget_usd
        self.cache = cache if cache is not None and cache.enabled else None
        self.prices = prices or PriceTable()
        self.run_label = run_label
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.usage = RunUsage()

    @property
    def provider(self) -> str:
        return self.client.provider

    @property
    def is_demo(self) -> bool:
        return self.client.provider == "demo"

    @property
    def spent_usd(self) -> float:
        return self.usage.total.cost_usd

    def model_for(self, role: str) -> str:
        return self.role_models.get(role.lower(), self.default_model)

    def check_budget(self) -> None:
        """Raise BudgetExceededError if the run has already spent its budget."""
        if self.budget_usd is None:
            return
        spent = self.spent_usd
        if spent >= self.budget_usd:
            raise BudgetExceededError(
                f"run budget of ${self.budget_usd:.4f} is used up (spent ${spent:.4f}); "
                f"raise budget_usd to let the run make more LLM calls"
            )

    async def chat(
        self,
        role: str,
        action: str,
        messages: list[ChatMessage],
        *,
        on_delta: DeltaCallback | None = None,
    ) -> LLMResponse:
        model = self.model_for(role)
        self.check_budget()

        key = None
        if self.cache is not None:
            key = cache_key(model, messages, self._cache_params(role, action))
            hit = await self.cache.get(key)
            if hit is not None:
                self.usage.record_cache_hit(role)
                if on_delta is not None:
                    # Live viewers still see the reply, in one piece.
                    await on_delta(hit.content)
                return LLMResponse(
                    content=hit.content,
                    model=hit.model,
                    provider=hit.provider,
                    cached=True,
                    call=LLMCall(model=hit.model, cache="hit"),
                    cache_key=key,
                )
            self.usage.record_cache_miss(role)

        context = CallContext(role=role, action=action, run_label=self.run_label)
        response = await self.client.complete(
            messages, model=model, context=context, on_delta=on_delta, **self._sampling_params()
        )
        cost, known = self._record(role, model, response.model, response.usage)
        split = split_reasoning(response.content)
        reasoning = "\n\n".join(part for part in (response.reasoning, split.reasoning) if part)
        response = replace(
            response,
            content=split.answer,
            reasoning=reasoning,
            cache_key=key,
            call=LLMCall(
                model=response.model or model,
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
                cost_usd=round(cost, COST_DECIMALS),
                cost_known=known,
                cache=None if key is None else "miss",
                estimated=response.usage.estimated,
            ),
        )
        if response.finish_reason == "length":
            raise LLMTruncatedError(self._truncation_message(role, action, response))
        return response

    async def accept(self, response: LLMResponse) -> None:
        """The reply was parsed and valid: let an identical call be answered from the cache."""
        if self.cache is None or response.cache_key is None or response.cached:
            return
        await self.cache.set(
            response.cache_key,
            CachedCompletion(
                content=response.content, model=response.model, provider=response.provider
            ),
        )

    async def discard(self, response: LLMResponse) -> None:
        """A reply served from the cache was refused: never serve it again."""
        if self.cache is not None and response.cache_key is not None and response.cached:
            await self.cache.delete(response.cache_key)

    def _truncation_message(self, role: str, action: str, response: LLMResponse) -> str:
        limit = (
            f"MGX_LLM_MAX_TOKENS={self.max_tokens}"
            if self.max_tokens is not None
            else "the provider's default limit, since MGX_LLM_MAX_TOKENS is not set"
        )
        when = " while still reasoning, before any answer" if not response.content else ""
        return (
            f"{role}'s {action} reply was cut off at the output token limit{when} "
            f"(finish_reason=length; {limit}): raise MGX_LLM_MAX_TOKENS"
        )

    def _record(
        self, role: str, requested: str, answered: str, tokens: TokenUsage
    ) -> tuple[float, bool]:
        # Providers answer with a dated or aliased name; fall back to the name we asked for.
        cost, known = self.prices.cost(answered, tokens)
        if not known and answered != requested:
            cost, known = self.prices.cost(requested, tokens)
        self.usage.record_call(role, tokens, cost, known)
        return cost, known

    def _cache_params(self, role: str, action: str) -> dict[str, Any]:
        # role/action are part of the key because the demo model answers by action, not text.
        return {
            "provider": self.client.provider,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "role": role,
            "action": action,
        }

    def _sampling_params(self) -> dict[str, Any]:
        if getattr(self.client, "accepts_sampling_params", False):
            return {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {}
