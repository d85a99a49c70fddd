"""Signals that wake the background runner: "a run was queued" and "run X was cancelled".

In-process, an ``asyncio.Event`` wakes idle workers at once. Across processes sharing one
PostgreSQL, the same signals travel by LISTEN/NOTIFY (sent inside the transaction that queues
or cancels, so they arrive only after it commits). On SQLite, or if the listener connection
drops, workers fall back to polling every ``RUNNER_POLL_SECONDS`` and the heartbeat notices
cancellations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger("backend.runner")

CHANNEL = "mgx_runs"


class RunSignals:
    def __init__(self) -> None:
        self.queued_event = asyncio.Event()
        self._cancel_handlers: list[Callable[[uuid.UUID], None]] = []
        self._listener = None

    # Sending (inside the caller's transaction)

    async def announce_queued(self, session: AsyncSession) -> None:
        await self._notify(session, "queued")

    async def announce_cancelled(self, session: AsyncSession, run_id: uuid.UUID) -> None:
        await self._notify(session, f"cancel:{run_id}")

    async def _notify(self, session: AsyncSession, payload: str) -> None:
        if session.bind.dialect.name == "postgresql":
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
        """Subscribe to other processes' signals (PostgreSQL only)."""
        if url.get_backend_name() != "postgresql":
            return
        import asyncpg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._listener = await asyncpg.connect(dsn, timeout=5)
            await self._listener.add_listener(CHANNEL, lambda *args: self.deliver(args[3]))
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("cross-process run signals unavailable (%s); polling instead", exc)
            self._listener = None

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
