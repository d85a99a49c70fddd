"""One API process for every protocol test (MCP and A2A): uvicorn on loopback, SQLite, the
offline demo model, two API keys. Each test makes its own tasks, so they share it safely."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ApiServer, service_env

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    workdir = tmp_path_factory.mktemp("protocols")
    env = service_env(
        f"sqlite+aiosqlite:///{workdir / 'protocols.db'}",
        None,  # the offline demo model
        api_keys=f"alice:{ALICE},bob:{BOB}",
        runner_poll_seconds=0.2,
        runner_heartbeat_seconds=0.2,
        runner_lease_seconds=3,
        runner_shutdown_grace_seconds=0.5,
        redis_url="",
    )
    api = ApiServer(env, workdir, "protocols-api").start()
    try:
        yield api
    finally:
        api.stop()
