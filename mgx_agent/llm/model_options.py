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
    # "user": the model takes no system message (o1-mini, o1-preview); its text opens the first
    # user message instead. "developer": sent under OpenAI's newer name for the same role.
    system_role: Literal["system", "developer", "user"] = "system"
    # Added to the request body as is, e.g. {"reasoning_effort": "low"}.
    extra_body: dict[str, Any] = Field(default_factory=dict)


DEFAULT_OPTIONS = ModelRequestOptions()
REASONING_MODEL_OPTIONS = ModelRequestOptions(
    send_temperature=False, max_tokens_param="max_completion_tokens"
)
NO_SYSTEM_MESSAGE_OPTIONS = ModelRequestOptions(
    send_temperature=False, max_tokens_param="max_completion_tokens", system_role="user"
)
_NO_SYSTEM_MESSAGE_MODEL = re.compile(r"^o1-(?:mini|preview)\b", re.IGNORECASE)
# o1, o1-mini, o3-mini-2025-01-31, o4-mini, gpt-5, gpt-5-mini ... (not gpt-4o, not gpt-5-chat).
_REASONING_MODEL = re.compile(r"^(?:o\d+(?:-(?!chat)[\w.-]*)?|gpt-5(?!-chat)(?:[\w.-]*)?)$", re.IGNORECASE)


def shape_messages(
    messages: list[dict[str, str]], options: ModelRequestOptions
) -> list[dict[str, str]]:
    """The messages as the model takes them: the system message renamed or folded into the
    first user message."""
    if options.system_role == "system":
        return messages
    if options.system_role == "developer":
        return [{**m, "role": "developer"} if m.get("role") == "system" else m for m in messages]
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
    rest = [m for m in messages if m.get("role") != "system"]
    for index, message in enumerate(rest):
        if message.get("role") == "user" and system:
            rest[index] = {**message, "content": f"{system}\n\n{message['content']}"}
            break
    return rest


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
    if _NO_SYSTEM_MESSAGE_MODEL.match(short):
        return NO_SYSTEM_MESSAGE_OPTIONS
    if _REASONING_MODEL.match(short):
        return REASONING_MODEL_OPTIONS
    return DEFAULT_OPTIONS
