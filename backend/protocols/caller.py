"""What a protocol request may use: the services, built for the caller the admission middleware
identified (``request.state.principal``), exactly as the REST routes build them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from backend.access import Principal, owner_filter
from backend.config import Settings
from backend.app.shutdown import GracefulShutdown
from backend.services.events import EventBroadcaster, Subscription
from backend.services.runs import RunService
from backend.services.tasks import TaskService

EVENT_PAGE = 500


@dataclass(frozen=True)
class CallerServices:
    principal: Principal | None
    settings: Settings
    tasks: TaskService
    runs: RunService
    events: EventBroadcaster
    shutdown: GracefulShutdown

    @property
    def owner(self) -> str | None:
        """The owner the caller is limited to (None: everything), for event subscriptions."""
        return owner_filter(self.principal)

    async def event_head(self, run_id: uuid.UUID) -> int:
        """The seq of the run's latest event: a follower that has seen the run so far starts
        after it."""
        head = 0
        while page := await self.runs.list_events(run_id, after=head, limit=EVENT_PAGE):
            head = page[-1].seq
            if len(page) < EVENT_PAGE:
                break
        return head

    @asynccontextmanager
    async def following(self, run_id: uuid.UUID, after: int) -> AsyncIterator[Subscription | None]:
        """The run's events after ``after`` (None: the run ended, nothing left), closed on leaving
        and when the process starts draining (SIGTERM), so an open call ends and the caller
        reconnects elsewhere instead of holding the shutdown up."""
        subscription = await self.events.subscribe_run(run_id, after, owner=self.owner)
        if subscription is None:
            yield None
            return

        async def close_on_drain() -> None:
            await self.shutdown.wait_draining()
            subscription.close()

        watcher = asyncio.create_task(close_on_drain())
        try:
            yield subscription
        finally:
            watcher.cancel()
            subscription.close()


def services_for(conn: HTTPConnection) -> CallerServices:
    """The services as the caller of ``conn`` may use them. ``conn`` is a request that passed the
    admission middleware, routed on the main app (so ``conn.app`` is the service's app)."""
    state = conn.app.state
    settings: Settings = state.settings
    principal: Principal | None = conn.state.principal  # set by the admission middleware, None when open
    return CallerServices(
        principal=principal,
        settings=settings,
        tasks=TaskService(
            state.database, idempotency_ttl_seconds=settings.idempotency_ttl_seconds, principal=principal
        ),
        runs=RunService(
            state.database,
            state.run_signals,
            approval_ttl_seconds=settings.mgx_approval_ttl_seconds,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
            principal=principal,
        ),
        events=state.events,
        shutdown=state.shutdown,
    )
