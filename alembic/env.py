"""Alembic environment: one migration history for PostgreSQL and SQLite (batch mode on SQLite).

Used three ways: the ``alembic`` command (URL from settings or ``-x url=...``), and the app's
start-up migration, which hands over an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

import asyncio
import sys
from logging.config import fileConfig

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from backend.db.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and not config.attributes.get("connection"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url():  # type: ignore[no-untyped-def]
    """The database to migrate; an invalid setting ends the command with one line and status 2,
    like the service's start-up (alembic would print a traceback)."""
    from backend.config import SettingsError, _normalise_database_url, load_settings

    override = context.get_x_argument(as_dictionary=True).get("url")
    try:
        if override:
            return _normalise_database_url(override)
        return load_settings().sqlalchemy_url
    except SettingsError as exc:
        message = str(exc)
    except ValueError as exc:
        message = f"invalid -x url: the URL {exc}"
    print(f"alembic: {message}", file=sys.stderr)
    raise SystemExit(2)


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from backend.db.engine import create_engine

    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
