"""LLMConfig from the environment, and build_llm_client's choice of provider."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mgx_agent.llm import (
    DEFAULT_OPENAI_BASE_URL,
    LLMConfig,
    OpenAICompatibleClient,
    build_llm_client,
    build_price_table,
)

SECRET = "sk-config-secret-42"


@pytest.fixture(autouse=True)
def clean_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MGX_LLM_"):
            monkeypatch.delenv(name)


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGX_LLM_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("MGX_LLM_MODEL", "llama3.1")
    monkeypatch.setenv("MGX_LLM_ROLE_MODELS", '{"Alex": "qwen2.5-coder"}')
    monkeypatch.setenv("MGX_LLM_PRICES", '{"llama3.1": {"prompt": 0.1, "completion": 0.2}}')
    monkeypatch.setenv("MGX_LLM_STREAM", "true")
    monkeypatch.setenv("MGX_LLM_MAX_RETRIES", "5")
    config = LLMConfig()
    assert config.base_url == "http://localhost:11434/v1"
    assert config.model == "llama3.1"
    assert config.role_models == {"alex": "qwen2.5-coder"}
    assert config.stream is True
    assert config.max_retries == 5
    assert build_price_table(config).price_of("llama3.1").completion == 0.2


def test_defaults_are_demo_mode() -> None:
    config = LLMConfig()
    assert config.is_configured is False
    assert config.model == "gpt-4o-mini"
    assert build_llm_client(config).provider == "demo"


def test_blank_values_from_env_files_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGX_LLM_BASE_URL", "")
    monkeypatch.setenv("MGX_LLM_API_KEY", "  ")
    config = LLMConfig()
    assert config.base_url is None
    assert config.api_key is None
    assert config.is_configured is False


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_url", "ftp://example.com"),
        ("base_url", "localhost:8000"),
        ("timeout_seconds", 0),
        ("max_retries", 11),
        ("max_retries", -1),
        ("temperature", 2.5),
        ("temperature", -0.1),
    ],
)
def test_invalid_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        LLMConfig(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_api_key_never_shows_in_repr_dump_or_description() -> None:
    config = LLMConfig(api_key=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())
    assert SECRET not in config.model_dump_json()
    description = config.describe()
    assert SECRET not in str(description)
    assert description["api_key_configured"] is True
    assert description["provider"] == "openai"
    assert LLMConfig().describe()["provider"] == "demo"


async def test_api_key_alone_targets_openai() -> None:
    client = build_llm_client(LLMConfig(api_key=SECRET))
    assert isinstance(client, OpenAICompatibleClient)
    assert client.base_url == DEFAULT_OPENAI_BASE_URL
    await client.aclose()


async def test_base_url_builds_the_openai_compatible_client() -> None:
    client = build_llm_client(LLMConfig(base_url="http://127.0.0.1:8000/v1"))
    assert isinstance(client, OpenAICompatibleClient)
    assert client.provider == "openai"
    assert client.base_url == "http://127.0.0.1:8000/v1"
    await client.aclose()
