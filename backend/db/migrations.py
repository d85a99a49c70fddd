"""Applying and checking the Alembic migration history from inside the service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import READ_ONLY_OPTION

logger = logging.getLogger("backend.db")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x6D6778


@dataclass(frozen=True)
class MigrationState:
    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return set(self.current) == set(self.heads)


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    return config


@lru_cache(maxsize=1)
def _script_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together migrate one at a time; the others then find nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> MigrationState:
    """Apply pending migrations; returns the state before them."""
    before = await migration_state(engine)
    if not before.at_head:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
        logger.info("database migrated from %s to %s", list(before.current) or "empty", list(before.heads))
    return before


async def migration_state(engine: AsyncEngine) -> MigrationState:
    def read(connection: Connection) -> tuple[str, ...]:
        return tuple(MigrationContext.configure(connection).get_current_heads())

    async with engine.connect() as connection:
        connection = await connection.execution_options(**{READ_ONLY_OPTION: True})
        current = await connection.run_sync(read)
    return MigrationState(current=current, heads=_script_heads())
