"""The health checks' own rules: one deadline for all checks, no secret in what they report."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mgx_agent.llm import LLMConfig
from pydantic import SecretStr

from backend.services.health import (
    REDACTED,
    run_checks,
    scrub,
    secret_values,
    url_without_credentials,
)
from tests.conftest import make_settings
from tests.databases import sqlite_copy


async def test_checks_run_concurrently_under_one_deadline() -> None:
    async def quick() -> tuple[str, dict]:
        await asyncio.sleep(0.01)
        return "fine", {"answer": 42}

    async def hangs() -> tuple[str, dict]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def fails() -> tuple[str, dict]:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    started = time.monotonic()
    results = await run_checks({"quick": quick, "hang-1": hangs, "hang-2": hangs, "fails": fails}, deadline=0.3)
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 0.6, f"two hanging checks took {elapsed:.2f}s: they did not share the deadline"
    by_name = {result.name: result for result in results}
    assert list(by_name) == ["quick", "hang-1", "hang-2", "fails"]
    assert by_name["quick"].ok and by_name["quick"].as_dict()["answer"] == 42
    assert by_name["quick"].latency_ms is not None
    for name in ("hang-1", "hang-2"):
        assert not by_name[name].ok
        assert by_name[name].detail == "no answer within 0.3s"
    assert by_name["fails"].detail == "ConnectionRefusedError: [Errno 111] Connection refused"


async def test_a_check_whose_cancellation_hangs_does_not_hold_the_answer() -> None:
    release = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def stubborn() -> tuple[str, dict]:
        # Like a driver that, once cancelled, waits on the dead connection before giving up.
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()
            cleaned_up.set()
        return "never", {}

    started = time.monotonic()
    [result] = await run_checks({"database": stubborn}, deadline=0.2)
    assert time.monotonic() - started < 0.5
    assert not result.ok and "no answer" in result.detail
    release.set()
    await asyncio.wait_for(cleaned_up.wait(), 1)


def test_url_without_credentials_drops_user_info_and_query() -> None:
    with_secrets = "https://user:hunter2@llm.example:8443/v1?key=abc"
    assert url_without_credentials(with_secrets) == f"https://llm.example:8443/v1?{REDACTED}"
    assert url_without_credentials("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1"
    assert url_without_credentials("http://[::1]:8080/v1") == "http://[::1]:8080/v1"
    assert url_without_credentials(None) is None


def test_secret_values_cover_secret_settings_url_passwords_and_the_llm_key(
    sqlite_template: Path, tmp_path: Path
) -> None:
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path),
        db_password="pg-pass-7781",
        redis_url="redis://:redis-pass-5512@cache.internal:6379/0",
        api_keys="ci:ci-key-40417733,ops:ops-key-6600912:admin",
    )
    llm = LLMConfig(_env_file=None, base_url="https://llm.example/v1", api_key=SecretStr("sk-test-9931"))
    secrets = secret_values(settings, llm)
    assert {"pg-pass-7781", "redis-pass-5512", "sk-test-9931", "ci-key-40417733", "ops-key-6600912"} <= set(secrets)
    assert not {"ci", "ops", "admin"} & set(secrets), "names and flags are not secrets"
    assert "redis://:redis-pass-5512@cache.internal:6379/0" in secrets
    # Longest first, so a URL is replaced whole before the password inside it.
    assert secrets == sorted(secrets, key=len, reverse=True)
    message = "AuthenticationError: redis://:redis-pass-5512@cache.internal:6379/0 refused sk-test-9931"
    assert scrub(message, secrets) == f"AuthenticationError: {REDACTED} refused {REDACTED}"
