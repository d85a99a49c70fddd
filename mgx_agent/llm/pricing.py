"""PriceTable: turns token usage into US dollars.

The built-in prices are list prices at time of writing, in USD per one million tokens;
override or extend them with MGX_LLM_PRICES. A model missing from the table costs 0 and is
reported as unknown, so a budget never silently relies on a made-up price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mgx_agent.llm.base import TokenUsage
from mgx_agent.llm.config import ModelPrice

# List prices at time of writing; override with MGX_LLM_PRICES. USD per 1M tokens.
BUILT_IN_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(prompt=2.50, completion=10.00),
    "gpt-4o-mini": ModelPrice(prompt=0.15, completion=0.60),
    "gpt-4.1": ModelPrice(prompt=2.00, completion=8.00),
    "gpt-4.1-mini": ModelPrice(prompt=0.40, completion=1.60),
    "gpt-4.1-nano": ModelPrice(prompt=0.10, completion=0.40),
    "gpt-4-turbo": ModelPrice(prompt=10.00, completion=30.00),
    "gpt-3.5-turbo": ModelPrice(prompt=0.50, completion=1.50),
    "o1": ModelPrice(prompt=15.00, completion=60.00),
    "o1-mini": ModelPrice(prompt=1.10, completion=4.40),
    "o3-mini": ModelPrice(prompt=1.10, completion=4.40),
    "o4-mini": ModelPrice(prompt=1.10, completion=4.40),
    # The offline demo model is free, and known to be.
    "mgx-demo": ModelPrice(prompt=0.0, completion=0.0),
}

_TOKENS_PER_PRICE_UNIT = 1_000_000

# Dated snapshots ("gpt-4o-2024-08-06", "gpt-3.5-turbo-0125") cost what their family costs.
# Other suffixes ("o1-pro", "gpt-4o-audio-preview") are different products and stay unknown.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


class PriceTable:
    def __init__(self, overrides: Mapping[str, ModelPrice | Mapping[str, float]] | None = None):
        self._prices: dict[str, ModelPrice] = {
            name.lower(): price for name, price in BUILT_IN_PRICES.items()
        }
        for name, price in (overrides or {}).items():
            if not isinstance(price, ModelPrice):
                price = ModelPrice.model_validate(price)
            self._prices[name.strip().lower()] = price

    def price_of(self, model: str) -> ModelPrice | None:
        """The price of ``model``, also for provider-prefixed or dated names.

        "openai/gpt-4o" (OpenRouter style) and "gpt-4o-mini-2024-07-18" (a dated snapshot)
        resolve to "gpt-4o" and "gpt-4o-mini".
        """
        name = model.strip().lower()
        for candidate in (name, name.rsplit("/", 1)[-1]):
            if candidate in self._prices:
                return self._prices[candidate]
            undated = _SNAPSHOT_SUFFIX.sub("", candidate)
            if undated in self._prices:
                return self._prices[undated]
        return None

    def cost(self, model: str, usage: TokenUsage) -> tuple[float, bool]:
        """(cost in USD, whether the model's price is known)."""
        price = self.price_of(model)
        if price is None:
            return 0.0, False
        usd = (
            usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion
        ) / _TOKENS_PER_PRICE_UNIT
        return usd, True

    def models(self) -> list[str]:
        return sorted(self._prices)
