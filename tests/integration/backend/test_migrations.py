"""The one migration history works on PostgreSQL and SQLite, from the command line and the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from backend.db.engine import create_engine
from backend.db.migrations import migration_state

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def alembic(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url.render_as_string(hide_password=False)}", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_downgrade_then_upgrade_from_the_project_root(database_url: URL) -> None:
    down = alembic(database_url, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    engine = create_engine(database_url)
    try:
        assert (await migration_state(engine)).current == ()
        up = alembic(database_url, "upgrade", "head")
        assert up.returncode == 0, up.stderr
        state = await migration_state(engine)
        assert state.at_head and state.current
    finally:
        await engine.dispose()


def test_models_and_migrations_agree(database_url: URL) -> None:
    check = alembic(database_url, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


async def test_sqlite_connections_are_tuned(sqlite_template: Path, tmp_path: Path) -> None:
    from tests.databases import sqlite_copy

    engine = create_engine(sqlite_copy(sqlite_template, tmp_path))
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000}
