"""Language model access for the team: clients, per-run sessions, prices and configuration.

``build_llm_client`` picks the provider: the OpenAI-compatible client when one is configured
(``MGX_LLM_BASE_URL`` and/or ``MGX_LLM_API_KEY``), otherwise the offline demo model.
"""

from __future__ import annotations

import httpx

from mgx_agent.llm.base import (
    CallContext,
    ChatMessage,
    DeltaCallback,
    LLMClient,
    LLMResponse,
    TokenUsage,
)
from mgx_agent.llm.config import DEFAULT_OPENAI_BASE_URL, LLMConfig, ModelPrice
from mgx_agent.llm.model_options import ModelRequestOptions, request_options_for
from mgx_agent.llm.openai_client import OpenAICompatibleClient
from mgx_agent.llm.pricing import BUILT_IN_PRICES, PriceTable
from mgx_agent.llm.reasoning import SplitReply, split_reasoning
from mgx_agent.llm.session import LLMSession


def build_llm_client(config: LLMConfig, http_client: httpx.AsyncClient | None = None) -> LLMClient:
    """The client for ``config``: OpenAI-compatible when configured, else the demo model."""
    if config.is_configured:
        return OpenAICompatibleClient(config, http_client=http_client)
    # Imported here: the demo model is only needed when no provider is configured.
    from mgx_agent.llm.demo import DemoLLMClient

    return DemoLLMClient()


def build_price_table(config: LLMConfig) -> PriceTable:
    """The built-in prices with the config's MGX_LLM_PRICES merged over them."""
    return PriceTable(config.prices)


__all__ = [
    "BUILT_IN_PRICES",
    "DEFAULT_OPENAI_BASE_URL",
    "CallContext",
    "ChatMessage",
    "DeltaCallback",
    "LLMClient",
    "LLMConfig",
    "LLMResponse",
    "LLMSession",
    "ModelPrice",
    "ModelRequestOptions",
    "OpenAICompatibleClient",
    "PriceTable",
    "SplitReply",
    "TokenUsage",
    "build_llm_client",
    "build_price_table",
    "request_options_for",
    "split_reasoning",
]
