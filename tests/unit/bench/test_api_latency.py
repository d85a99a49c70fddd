"""The settings the API latency benchmark starts the service with."""

from __future__ import annotations

from backend.config import load_settings
from bench.api_latency import service_overrides


def test_the_benchmarked_service_is_authenticated_as_admin_and_never_throttled() -> None:
    env, headers = service_overrides("bench-key")

    settings = load_settings(_env_file=None, **{name.lower(): value for name, value in env.items()})

    assert settings.rate_limit_per_minute >= 100_000 and settings.rate_limit_burst >= 100_000
    assert headers == {"Authorization": "Bearer bench-key"}
    assert [(key.name, key.admin) for key in settings.api_key_entries()] == [("bench", True)]
