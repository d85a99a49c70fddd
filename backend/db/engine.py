"""The async engine and session factory, with SQLite tuned for a concurrent service.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every transaction starts
with ``BEGIN IMMEDIATE`` so that a read-then-write (claiming a run, bumping a version) cannot
fail half-way with "database is locked" when another connection writes at the same time.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncContextManager

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY_OPTION = "read_only"


def create_engine(url: URL, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, echo=echo)
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, echo=echo)
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
    """The pool's liveness check, without a round trip: a pooled connection whose server went
    away (a restart, an idle timeout, a terminated backend) has seen its socket close, and asyncpg
    knows it; the pool then opens a new one in its place. ``pool_pre_ping`` asked the server
    instead, with BEGIN, an empty statement and ROLLBACK on every checkout: three round trips in
    front of a journal write that is itself one (docs/architecture.md, "Database work per run").
    A connection that dies unseen (no FIN) fails its statement, which invalidates the pool."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


def create_runner_engine(url: URL) -> AsyncEngine:
    """The engine of the runner's own loops (claiming, lease heartbeats, the reaper): a few
    connections of their own, so a claim or a heartbeat never waits in the queue of a request
    pool that the runs and requests have used up (claims would lag by seconds, leases lapse)."""
    return create_engine(url, pool_size=3, max_overflow=2)


def create_probe_engine(url: URL) -> AsyncEngine:
    """The engine of the health probes: its own connection, so a probe never queues behind a
    request pool that load has used up (an orchestrator would pull a busy instance out)."""
    return create_engine(url, pool_size=1, max_overflow=1)


def _create_sqlite_engine(url: URL, *, echo: bool) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _tune(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        # Read-only work (probes) opts out with execution_options(read_only=True): under WAL a
        # deferred transaction never waits for writers.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class Database:
    """Where services open their units of work, one per operation: ``session()`` for changes to
    ORM objects (committed by the service), ``writing()`` for a transaction of Core statements
    (committed when the block ends without an error), ``reading()`` for a read-only connection
    (on SQLite a deferred transaction that never waits for writers). The connections cost much
    less than a session, so answers that are plain rows (reads, a creation) skip the ORM."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine = engine
        self.sessions = sessions
        self._reader = engine.execution_options(**{READ_ONLY_OPTION: True})

    def session(self) -> AsyncSession:
        return self.sessions()

    def writing(self) -> AsyncContextManager[AsyncConnection]:
        return self.engine.begin()

    def reading(self) -> AsyncConnection:
        return self._reader.connect()
