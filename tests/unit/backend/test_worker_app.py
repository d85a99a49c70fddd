"""The worker's app: refuses settings that leave it nothing to do, serves only probes and metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from backend.config import SettingsError
from backend.worker.app import create_worker_app
from tests.conftest import make_settings


def sqlite_url(tmp_path: Path) -> URL:
    return URL.create("sqlite+aiosqlite", database=str(tmp_path / "mgx.db"))


def test_worker_without_runner_slots_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="RUNNER_WORKERS: 0 leaves a worker nothing to do"):
        create_worker_app(make_settings(sqlite_url(tmp_path), runner_workers=0))


async def test_worker_serves_no_api_route_and_no_documentation(tmp_path: Path) -> None:
    app = create_worker_app(make_settings(sqlite_url(tmp_path), runner_workers=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as client:
        for path in ("/tasks/", "/runs/", "/docs", "/openapi.json", "/mcp"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json", path
    assert {route.path for route in app.routes} == {
        "/health/", "/health/live", "/health/ready", "/health/status", "/metrics"
    }
