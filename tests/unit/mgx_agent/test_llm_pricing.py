"""PriceTable: built-in prices, overrides, name resolution and unknown models."""

from __future__ import annotations

import pytest

from mgx_agent.llm import ModelPrice, PriceTable, TokenUsage


def test_known_model_cost_uses_prompt_and_completion_prices() -> None:
    usage = TokenUsage(prompt_tokens=2_000, completion_tokens=1_000)
    usd, known = PriceTable().cost("gpt-4o", usage)
    assert known is True
    assert usd == pytest.approx((2_000 * 2.50 + 1_000 * 10.00) / 1_000_000)


def test_unknown_model_costs_zero_and_is_reported_unknown() -> None:
    assert PriceTable().cost("my-local-llama", TokenUsage(10_000, 10_000)) == (0.0, False)


def test_override_replaces_and_extends_built_in_prices() -> None:
    table = PriceTable(
        {"gpt-4o": ModelPrice(prompt=1, completion=1), "My-Model": {"prompt": 3, "completion": 4}}
    )
    assert table.cost("gpt-4o", TokenUsage(1_000_000, 0)) == (pytest.approx(1.0), True)
    assert table.cost("my-model", TokenUsage(0, 1_000_000)) == (pytest.approx(4.0), True)
    assert table.cost("gpt-4o-mini", TokenUsage(1_000_000, 0)) == (pytest.approx(0.15), True)


@pytest.mark.parametrize(
    "name, family",
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ],
)
def test_dated_and_prefixed_names_resolve_to_their_family(name: str, family: str) -> None:
    table = PriceTable()
    assert table.price_of(name) == table.price_of(family)


def test_different_products_sharing_a_prefix_stay_unknown() -> None:
    assert PriceTable().price_of("o1-pro") is None
    assert PriceTable().price_of("gpt-4o-audio-preview") is None


def test_demo_model_is_free_and_known() -> None:
    assert PriceTable().cost("mgx-demo", TokenUsage(500, 500)) == (0.0, True)
