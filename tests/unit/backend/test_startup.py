"""What start-up says and refuses: one line naming the variable for every invalid setting (JSON
ones included, and alembic's own entry), the port checked before anything is migrated, and the
line naming the database, LLM provider, sandbox and auth mode without secrets.

(That a ``SettingsError`` from ``create_app`` ends ``python -m backend.app.main`` with one line
and status 2 is ``tests/unit/test_backend_bootstrap.py``'s; here: that JSON settings raise one.)"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from backend.access import KeyRing, parse_api_keys
from backend.app import startup
from backend.config import SettingsError, load_llm_config, load_settings
from backend.db.types import utcnow
from backend.observability.run_log import RunTransitionLog
from backend.services.events import StreamEvent
from mgx_agent.llm import LLMConfig

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("API_", "MGX_", "DB_", "REDIS", "DATABASE", "LOG_", "CORS", "RUNNER_", "SQLITE_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("MGX_LLM_ROLE_MODELS", "{alex: gpt-4.1}", "MGX_LLM_ROLE_MODELS: is not valid JSON"),
        ("MGX_LLM_PRICES", '{"m": {"prompt": 1', "MGX_LLM_PRICES: is not valid JSON"),
        ("MGX_LLM_PRICES", '{"m": 3}', "MGX_LLM_PRICES: m: Input should be"),
        ("MGX_LLM_TEMPERATURE", "hot", "MGX_LLM_TEMPERATURE: "),
    ],
)
def test_invalid_llm_setting_is_one_line_naming_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_llm_config()
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {said}")
    assert "\n" not in message and "role_models" not in message


def test_invalid_json_list_setting_is_one_line(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", '["http://a.example",')
    with pytest.raises(SettingsError, match=r"^invalid configuration: CORS_ORIGINS: [^\n]+$"):
        load_settings()


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("API_", "DB_", "DATABASE", "MGX_", "SQLITE_"))}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SQLITE_PATH=str(tmp_path / "mgx.db"), **extra)
    return env


def test_alembic_with_invalid_setting_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env=service_env(tmp_path, API_PORT="99999", DB_PASSWORD="do-not-print"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alembic: invalid configuration: API_PORT: Input should be less than or equal to 65535"
    ]


def test_port_in_use_is_one_line_before_anything_is_migrated(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "backend.app.main"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=service_env(tmp_path, API_HOST="127.0.0.1", API_PORT=str(port)),
        )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"mgx-agent-api: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert not (tmp_path / "mgx.db").exists()  # refused before the database was created or migrated


def test_database_is_described_without_its_password() -> None:
    postgres = make_url("postgresql+asyncpg://app:s3cret@db.internal:6543/mgx")
    assert startup.describe_database(postgres) == "PostgreSQL db.internal:6543/mgx as app"
    sqlite = make_url("sqlite+aiosqlite:///data/mgx.db")
    assert startup.describe_database(sqlite) == f"SQLite {Path('data/mgx.db').resolve()}"


def test_llm_provider_is_demo_or_its_url_without_credentials() -> None:
    assert startup.describe_llm(LLMConfig(base_url=None, api_key=None)).startswith("demo")
    described = startup.describe_llm(LLMConfig(base_url="https://user:pw@llm.example/v1?key=k", api_key="sk-x"))
    assert "llm.example/v1" in described and "pw" not in described and "sk-x" not in described
    assert "key=k" not in described


def test_auth_mode_counts_keys_and_never_shows_one() -> None:
    ring = KeyRing(parse_api_keys("ci:key-one-123456,ops:key-two-123456:admin"))
    assert startup.describe_auth(ring) == "2 API key(s), 1 admin"
    assert startup.describe_auth(KeyRing([])) == "open (no API_KEYS)"


def test_starting_outside_the_project_names_the_database_it_will_use(clean_env: Path) -> None:
    hint = startup.working_directory_hint(load_settings(), cwd=clean_env)
    assert hint is not None and str(clean_env / "data" / "mgx.db") in hint
    assert startup.working_directory_hint(load_settings(), cwd=startup.PROJECT_ROOT) is None


def test_each_committed_status_change_is_one_info_line_with_the_run_id(caplog: pytest.LogCaptureFixture) -> None:
    import uuid

    run_id, task_id = uuid.uuid4(), uuid.uuid4()
    log = RunTransitionLog()
    usage = {"total": {"cost_usd": 0.0123, "total_tokens": 10}}
    failed = {"status": "failed", "previous": "running", "error": {"code": "revision_limit", "message": "no approval\nafter 2"}}
    with caplog.at_level(logging.INFO, logger="backend.runs"):
        log.observe([StreamEvent(run_id, task_id, 1, "run.status", {"status": "planning", "previous": "queued"}, utcnow())])
        log.observe([StreamEvent(run_id, task_id, 2, "run.usage", usage, utcnow()),
                     StreamEvent(run_id, task_id, 3, "run.status", failed, utcnow()),
                     StreamEvent(run_id, task_id, 4, "run.failed", failed, utcnow())])
    lines = [(record.getMessage(), record.run_id) for record in caplog.records]
    assert lines == [
        (f"run queued -> planning task={task_id}", str(run_id)),
        (f"run running -> failed: revision_limit (no approval) cost=$0.0123 task={task_id}", str(run_id)),
    ]
