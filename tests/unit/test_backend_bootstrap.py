"""Bootstrap of the service: settings priority, lifespan, routers, health, entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from backend.app.main import create_app
from mgx_agent.llm import LLMConfig

from backend.config import Settings, SettingsError, load_llm_config, load_settings
from tests.conftest import make_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    from tests.databases import sqlite_copy

    return make_settings(sqlite_copy(sqlite_template, tmp_path))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No service variables from the developer's shell, and an empty working directory."""
    for name in list(os.environ):
        if name.startswith(("API_", "MGX_", "DB_", "REDIS", "DATABASE", "LOG_", "CORS", "RUNNER_")) or name == "DEBUG":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TestSettings:
    def test_defaults_use_embedded_sqlite(self, clean_env: Path) -> None:
        settings = load_settings()
        assert settings.database_dialect == "sqlite"
        assert settings.sqlalchemy_url.drivername == "sqlite+aiosqlite"
        assert settings.db_auto_migrate is True
        assert (settings.api_host, settings.api_port, settings.api_workers) == ("127.0.0.1", 8000, 1)
        assert settings.mgx_cache_backend == "memory"
        assert "http://localhost:3000" in settings.cors_origins

    def test_environment_beats_dotenv_beats_defaults(self, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (clean_env / ".env").write_text("API_PORT=9001\nMGX_MAX_ROUNDS=7\nLOG_LEVEL=debug\n")
        monkeypatch.setenv("API_PORT", "9002")
        settings = load_settings()
        assert settings.api_port == 9002  # environment
        assert settings.mgx_max_rounds == 7  # .env
        assert settings.log_level == "DEBUG"  # .env, normalised
        assert settings.mgx_max_revision_rounds == 2  # default

    def test_db_host_selects_postgres_and_database_url_wins(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DB_HOST", "db.internal")
        monkeypatch.setenv("DB_PASSWORD", "s3cr3t-pw")
        settings = load_settings()
        assert settings.sqlalchemy_url.drivername == "postgresql+asyncpg"
        assert settings.sqlalchemy_url.host == "db.internal"
        assert settings.db_auto_migrate is False
        assert "s3cr3t-pw" not in settings.safe_database_url
        assert "s3cr3t-pw" not in repr(settings)
        monkeypatch.setenv("DATABASE_URL", "postgres://app:other@warehouse:6543/mgx")
        url = load_settings().sqlalchemy_url
        assert (url.drivername, url.host, url.port, url.database) == ("postgresql+asyncpg", "warehouse", 6543, "mgx")

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("API_PORT", "0"),
            ("API_PORT", "http"),
            ("MGX_CACHE_BACKEND", "memcached"),
            ("DATABASE_URL", "not a url"),
            ("DATABASE_URL", "mysql://root@localhost/db"),
            ("REDIS_URL", "localhost:6379"),
            ("MGX_MAX_ROUNDS", "21"),
            ("LOG_LEVEL", "chatty"),
        ],
    )
    def test_invalid_value_is_one_line_naming_the_variable(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        message = str(caught.value)
        assert variable in message
        assert "\n" not in message

    def test_invalid_database_url_does_not_echo_its_password(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@localhost/db")
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert "hunter2" not in str(caught.value)


class TestLifespan:
    async def test_lifespan_opens_and_closes_the_engine(self, sqlite_settings: Settings) -> None:
        app = create_app(sqlite_settings)
        async with app.router.lifespan_context(app):
            engine = app.state.engine
            # (No check of checkedout() here: the runner's claim loop may hold a connection at
            # any moment after start-up.)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                assert (await client.get("/health/ready")).status_code == 200
        assert engine.pool.checkedin() == 0  # disposed: no pooled connection left open

    async def test_startup_migrates_an_empty_sqlite_database(self, tmp_path: Path) -> None:
        url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "fresh" / "mgx.db"))
        settings = make_settings(url, db_auto_migrate=True)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["migrations"]["current"] == ready.json()["checks"]["migrations"]["head"]


class TestRouters:
    def test_routes_are_registered(self, sqlite_settings: Settings) -> None:
        app = create_app(sqlite_settings)
        paths = set(app.openapi()["paths"])
        assert {"/", "/health/", "/health/live", "/health/ready", "/health/status", "/tasks/", "/tasks/{task_id}"} <= paths
        with TestClient(app) as client:
            for page in ("/docs", "/redoc", "/openapi.json"):
                assert client.get(page).status_code == 200, page

    def test_service_info_links_to_docs(self, sqlite_settings: Settings) -> None:
        with TestClient(create_app(sqlite_settings)) as client:
            info = client.get("/").json()
        assert info["name"] == "MGX Agent API"
        assert (info["docs"], info["redoc"], info["openapi"]) == ("/docs", "/redoc", "/openapi.json")

    def test_cors_allows_configured_origins_only(self, sqlite_template: Path, tmp_path: Path) -> None:
        from tests.databases import sqlite_copy

        settings = make_settings(sqlite_copy(sqlite_template, tmp_path), cors_origins=["http://console.local"])
        with TestClient(create_app(settings)) as client:
            allowed = client.get("/health/", headers={"Origin": "http://console.local"})
            other = client.get("/health/", headers={"Origin": "http://evil.example"})
        assert allowed.headers["access-control-allow-origin"] == "http://console.local"
        assert "access-control-allow-origin" not in other.headers


class TestHealthEndpoint:
    def test_health_endpoint_with_test_client(self, sqlite_settings: Settings) -> None:
        with TestClient(create_app(sqlite_settings)) as client:
            response = client.get("/health/")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_live_answers_without_dependencies(self, sqlite_settings: Settings) -> None:
        with TestClient(create_app(sqlite_settings)) as client:
            assert client.get("/health/live").json() == {"status": "ok"}

    def test_ready_reports_each_check(self, sqlite_settings: Settings) -> None:
        with TestClient(create_app(sqlite_settings)) as client:
            body = client.get("/health/ready").json()
        assert body["status"] == "ready"
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["migrations"]["ok"] is True

    def test_ready_is_503_naming_migrations_when_schema_is_behind(self, tmp_path: Path) -> None:
        settings = make_settings(URL.create("sqlite+aiosqlite", database=str(tmp_path / "empty.db")))
        with TestClient(create_app(settings)) as client:
            response = client.get("/health/ready")
            live = client.get("/health/live")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "migrations" in response.json()["detail"]
        assert response.json()["checks"]["migrations"]["ok"] is False
        assert live.status_code == 200

    def test_ready_is_503_when_redis_is_unreachable(self, sqlite_settings: Settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        settings = sqlite_settings.model_copy(update={"redis_url": _secret(f"redis://127.0.0.1:{closed_port}/0")})
        with TestClient(create_app(settings)) as client:
            response = client.get("/health/ready")
            status = client.get("/health/status").json()
        assert response.status_code == 503
        assert "redis" in response.json()["detail"]
        assert status["redis"] == {**status["redis"], "configured": True, "reachable": False}
        assert status["status"] == "degraded"

    def test_status_reports_versions_and_no_secrets(self, sqlite_settings: Settings) -> None:
        settings = sqlite_settings.model_copy(
            update={"db_password": _secret("pg-secret-123"), "redis_url": None}
        )
        with TestClient(create_app(settings)) as client:
            response = client.get("/health/status")
        body = response.json()
        assert body["version"] == "0.1.0"
        assert body["database"]["dialect"] == "sqlite"
        assert body["database"]["ok"] is True
        assert body["cache"]["backend"] == "memory"
        assert body["redis"] == {"configured": False}
        assert body["uptime_seconds"] >= 0
        assert "pg-secret-123" not in response.text


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestEntryPoint:
    def _start(self, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def _env(self, tmp_path: Path, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("API_", "DB_", "DATABASE"))}
        env.update(PYTHONPATH=str(PROJECT_ROOT), SQLITE_PATH=str(tmp_path / "mgx.db"), **extra)
        return env

    @pytest.mark.parametrize("command", [["-m", "backend.app.main"], ["-m", "uvicorn", "backend.app.main:app"]])
    def test_entry_points_start_the_service(self, tmp_path: Path, command: list[str]) -> None:
        port = _free_port()
        env = self._env(tmp_path, API_HOST="127.0.0.1", API_PORT=str(port), LOG_LEVEL="WARNING")
        if "uvicorn" in command:
            command = [*command, "--port", str(port)]
        process = self._start([sys.executable, *command], env, tmp_path)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                    assert time.monotonic() < deadline, "service did not start"
                    time.sleep(0.1)
            assert response.status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=10)

    def test_invalid_configuration_exits_with_one_line(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "backend.app.main"],
            cwd=tmp_path,
            env=self._env(tmp_path, API_PORT="0", DB_PASSWORD="do-not-print"),
            capture_output=True,
            timeout=30,
        )
        assert result.returncode == 2
        output = result.stderr.decode().strip()
        assert output.splitlines() == [output]
        assert "API_PORT" in output and "Traceback" not in output
        assert "do-not-print" not in output


class TestEnvExample:
    def test_env_example_lists_every_setting_and_loads_to_the_defaults(self, clean_env: Path) -> None:
        example = (PROJECT_ROOT / ".env.example").read_text()
        names = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
        llm_names = {f"MGX_LLM_{name.upper()}" for name in LLMConfig.model_fields}
        assert names == {name.upper() for name in Settings.model_fields} | llm_names
        (clean_env / ".env").write_text(example)
        assert load_settings() == Settings(_env_file=None)
        assert load_llm_config() == LLMConfig(_env_file=None)
