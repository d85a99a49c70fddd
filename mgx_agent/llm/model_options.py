"""Per-model request options: what the Chat Completions request may carry for a model.

OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 and their dated or routed names) refuse a
``temperature`` other than the default and want ``max_completion_tokens`` instead of
``max_tokens``. Those rules are built in; ``MGX_LLM_MODEL_OPTIONS`` overrides them per model
name or glob (an Azure deployment called "prod-reasoner" cannot be recognised by its name).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelRequestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    send_temperature: bool = True
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Added to the request body as is, e.g. {"reasoning_effort": "low"}.
    extra_body: dict[str, Any] = Field(default_factory=dict)


DEFAULT_OPTIONS = ModelRequestOptions()
REASONING_MODEL_OPTIONS = ModelRequestOptions(
    send_temperature=False, max_tokens_param="max_completion_tokens"
)
# o1, o1-mini, o3-mini-2025-01-31, o4-mini, gpt-5, gpt-5-mini ... (not gpt-4o, not gpt-5-chat).
_REASONING_MODEL = re.compile(r"^(?:o\d+(?:-(?!chat)[\w.-]*)?|gpt-5(?!-chat)(?:[\w.-]*)?)$", re.IGNORECASE)


def request_options_for(
    model: str, overrides: dict[str, ModelRequestOptions] | None = None
) -> ModelRequestOptions:
    """The options for ``model``: the first matching override, else the built-in rule."""
    # Routers prefix the vendor ("openai/o3-mini"); the rule looks at the last part.
    short = model.rsplit("/", 1)[-1]
    for pattern, options in (overrides or {}).items():
        if fnmatch.fnmatchcase(model.lower(), pattern.lower()) or fnmatch.fnmatchcase(
            short.lower(), pattern.lower()
        ):
            return options
    if _REASONING_MODEL.match(short):
        return REASONING_MODEL_OPTIONS
    return DEFAULT_OPTIONS
