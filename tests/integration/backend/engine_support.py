"""What every engine's completed run must show, whichever engine ran it (stand-in or MetaGPT)."""

from __future__ import annotations

from typing import Any

import pytest
from mgx_agent.llm import TokenUsage
from mgx_agent.llm.pricing import PriceTable

NATIVE_ARTIFACTS = {"plan.json", "review.md", "fizzbuzz.py", "test_fizzbuzz.py", "sandbox-report.json"}


def assert_tests_ran_in_the_service_sandbox(done: dict[str, Any]) -> None:
    """The generated tests passed in our sandbox, and the artifacts have the native shape."""
    assert done["result"]["sandbox"]["passed"] >= 1
    assert done["result"]["verification"]["tests"] == "passed"
    assert NATIVE_ARTIFACTS <= {artifact["name"] for artifact in done["artifacts"]}


def assert_usage_is_what_the_provider_returned(
    done: dict[str, Any], replies: list[tuple[str, TokenUsage]], models: list[str]
) -> None:
    """Calls, tokens, per-call models and cost add up to the fake provider's replies."""
    total = done["usage"]["total"]
    assert total["llm_calls"] == len(replies) == len(models)
    assert total["prompt_tokens"] == sum(usage.prompt_tokens for _, usage in replies)
    assert total["completion_tokens"] == sum(usage.completion_tokens for _, usage in replies)
    assert [model for model, _ in replies] == models
    expected_cost = sum(PriceTable().cost(model, usage)[0] for model, usage in replies)
    assert total["cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
