"""TeamConfig: defaults, bounds, unknown keys and task overrides, with field-path errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mgx_agent.config import TeamConfig


def error_locations(exc: ValidationError) -> list[tuple[str, ...]]:
    return [tuple(str(part) for part in error["loc"]) for error in exc.errors()]


def test_defaults() -> None:
    config = TeamConfig()
    assert (config.max_rounds, config.max_revision_rounds, config.max_memory_size) == (5, 2, 50)
    cache = (config.cache_backend, config.cache_max_entries, config.cache_ttl_seconds)
    assert cache == ("memory", 1024, 3600)
    assert config.enable_caching and not config.auto_approve_plan and not config.use_multi_llm
    assert config.budget_usd is None
    assert (config.sandbox.timeout_seconds, config.sandbox.memory_mb) == (60, 512)


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({"max_rounds": 0}, ("max_rounds",)),
        ({"max_rounds": 21}, ("max_rounds",)),
        ({"max_revision_rounds": 6}, ("max_revision_rounds",)),
        ({"max_memory_size": 9}, ("max_memory_size",)),
        ({"cache_backend": "memcached"}, ("cache_backend",)),
        ({"cache_ttl_seconds": 59}, ("cache_ttl_seconds",)),
        ({"budget_usd": 0}, ("budget_usd",)),
        ({"sandbox": {"mode": "docker"}}, ("sandbox", "mode")),
        ({"sandbox": {"timeout": 5}}, ("sandbox", "timeout")),
        ({"models": {"dave": "gpt-4o"}}, ("models",)),
        ({"max_round": 3}, ("max_round",)),
    ],
)
def test_invalid_values_and_unknown_keys_name_the_field(
    data: dict, location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        TeamConfig.model_validate(data)
    assert location in error_locations(caught.value)


def test_task_overrides_apply_only_overridable_fields() -> None:
    base = TeamConfig(cache_backend="redis", budget_usd=5)
    required = {"max_rounds", "max_revision_rounds", "auto_approve_plan", "budget_usd", "models"}
    assert required <= TeamConfig.overridable_fields()

    config = base.with_task_overrides(
        {"max_rounds": 3, "budget_usd": 0.5, "auto_approve_plan": True}
    )
    assert (config.max_rounds, config.budget_usd, config.auto_approve_plan) == (3, 0.5, True)
    assert config.cache_backend == "redis"

    with pytest.raises(ValidationError) as caught:
        base.with_task_overrides({"cache_backend": "none"})
    assert caught.value.errors()[0]["type"] == "not_overridable"
    with pytest.raises(ValidationError) as caught:
        base.with_task_overrides({"colour": "blue"})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_revision_limit_is_capped_by_rounds_and_role_models_need_multi_llm() -> None:
    assert TeamConfig(max_rounds=2, max_revision_rounds=4).revision_limit() == 1
    assert TeamConfig(max_rounds=1).revision_limit() == 0
    assert TeamConfig(models={"alex": "gpt-4.1"}).role_models() == {}
    multi = TeamConfig(models={"alex": "gpt-4.1"}, use_multi_llm=True)
    assert multi.role_models() == {"alex": "gpt-4.1"}
