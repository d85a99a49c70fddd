"""Signals that wake the background runner: "a run was queued" and "run X was cancelled".

In-process, an ``asyncio.Event`` wakes idle workers at once. Across processes sharing one
PostgreSQL, the same signals travel by LISTEN/NOTIFY (sent inside the transaction that queues
or cancels, so they arrive only after it commits). On SQLite, or if the listener connection
drops, workers fall back to polling every ``RUNNER_POLL_SECONDS`` and the heartbeat notices
cancellations until the listener reconnects (in the background, with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

logger = logging.getLogger("backend.runner")

CHANNEL = "mgx_runs"
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0


class RunSignals:
    def __init__(self) -> None:
        self.queued_event = asyncio.Event()
        self._cancel_handlers: list[Callable[[uuid.UUID], None]] = []
        self._listener = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # Sending (inside the caller's transaction)

    async def announce_queued(self, session: AsyncSession | AsyncConnection) -> None:
        await self._notify(session, "queued")

    async def announce_cancelled(self, session: AsyncSession, run_id: uuid.UUID) -> None:
        await self._notify(session, f"cancel:{run_id}")

    async def _notify(self, session: AsyncSession | AsyncConnection, payload: str) -> None:
        dialect = session.dialect if isinstance(session, AsyncConnection) else session.bind.dialect
        if dialect.name == "postgresql":
            await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    # Receiving

    def on_cancel(self, handler: Callable[[uuid.UUID], None]) -> None:
        self._cancel_handlers.append(handler)

    def deliver(self, payload: str) -> None:
        """Act on a signal (local, after commit, or from another process)."""
        if payload == "queued":
            self.queued_event.set()
        elif payload.startswith("cancel:"):
            with contextlib.suppress(ValueError):
                run_id = uuid.UUID(payload.removeprefix("cancel:"))
                for handler in self._cancel_handlers:
                    handler(run_id)

    async def listen(self, url: URL) -> None:
        """Subscribe to other processes' signals (PostgreSQL only), and stay subscribed: a
        dropped listener connection (a database restart) is reconnected in the background."""
        if url.get_backend_name() != "postgresql":
            return
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        if not await self._connect(dsn):
            logger.warning("cross-process run signals unavailable; polling until the database answers")
        self._supervisor = asyncio.create_task(self._stay_connected(dsn), name="run-signals-listener")

    async def _connect(self, dsn: str) -> bool:
        import asyncpg

        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
            await connection.add_listener(CHANNEL, lambda *args: self.deliver(args[3]))
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        connection.add_termination_listener(lambda _connection: lost.set())
        self._listener, self._lost = connection, lost
        return True

    async def _stay_connected(self, dsn: str) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            if self._listener is not None:
                await self._lost.wait()
                self._listener = None
                logger.warning("cross-process run signals lost; reconnecting (polling meanwhile)")
            await asyncio.sleep(delay)
            if await self._connect(dsn):
                logger.info("cross-process run signals reconnected")
                delay = RECONNECT_MIN_SECONDS
                # Signals sent while disconnected are gone: look at the queue once.
                self.deliver("queued")
            else:
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
