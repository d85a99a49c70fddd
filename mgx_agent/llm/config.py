"""LLMConfig: how to reach the language model provider, read from ``MGX_LLM_*`` variables.

Only the process environment is read here; the backend's Settings owns ``.env`` handling and
passes values in explicitly when it builds an ``LLMConfig``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mgx_agent.llm.model_options import ModelRequestOptions

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


class ModelPrice(BaseModel):
    """List price of one model in USD per one million tokens."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class LLMConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MGX_LLM_", extra="ignore")

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    # Per-role model overrides, e.g. {"alex": "gpt-4.1"}; env MGX_LLM_ROLE_MODELS as JSON.
    role_models: dict[str, str] = Field(default_factory=dict)
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    # The deadline of one attempt of one call, a streamed one included (connect to last byte).
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Replies larger than this are refused without being read to the end.
    max_reply_bytes: int = Field(default=1_000_000, ge=1024)
    # Request options per model name or glob; env MGX_LLM_MODEL_OPTIONS as JSON, e.g.
    # {"my-o3-deployment": {"send_temperature": false, "max_tokens_param": "max_completion_tokens"}}
    model_options: dict[str, ModelRequestOptions] = Field(default_factory=dict)
    max_retries: int = Field(default=3, ge=0, le=10)
    # First backoff step; attempt n waits a random time in [0, base * 2**n] (full jitter).
    retry_base_seconds: float = Field(default=0.5, ge=0)
    # Upper bound for any single wait, including one asked for by a Retry-After header.
    retry_max_wait_seconds: float = Field(default=30.0, ge=0)
    stream: bool = False
    # Merged over the built-in table; env MGX_LLM_PRICES as JSON {"model": {"prompt":..,..}}.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("base_url must be a string")
        value = value.strip()
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL such as {DEFAULT_OPENAI_BASE_URL}, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("api_key", "max_tokens", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An empty MGX_LLM_API_KEY= (or MAX_TOKENS=) line in an env file means "not set".
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be empty")
        return value.strip()

    @field_validator("role_models")
    @classmethod
    def _normalise_roles(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned = {role.strip().lower(): model.strip() for role, model in value.items()}
        blank = sorted(role for role, model in cleaned.items() if not model)
        if blank:
            raise ValueError(f"role_models has an empty model for: {', '.join(blank)}")
        return cleaned

    @property
    def is_configured(self) -> bool:
        """True when a real provider was asked for (otherwise the demo model is used)."""
        return self.base_url is not None or self.api_key is not None

    @property
    def effective_base_url(self) -> str:
        return self.base_url or DEFAULT_OPENAI_BASE_URL

    def describe(self) -> dict[str, object]:
        """What may be shown about this config (status pages, logs): never the key itself."""
        return {
            "provider": "openai" if self.is_configured else "demo",
            "base_url": self.effective_base_url if self.is_configured else None,
            "model": self.model,
            "role_models": dict(self.role_models),
            "stream": self.stream,
            "api_key_configured": self.api_key is not None,
        }
