"""Live run events: the one publisher (``EventBroadcaster``) and its subscribers.

Events are written to the database inside the writer's transaction (``run_journal``) and staged
on the session; once that transaction commits, the broadcaster hands them to local subscribers
and to the Redis channel when ``REDIS_URL`` is set. Events written by other processes arrive
through Redis, or, without a working Redis, through a short database poll.

Invariant: a subscriber's position is its cursor, the last ``seq`` it delivered per run.
Notifications only wake it or hand it events; an event that does not continue the cursor
exactly is skipped (already delivered) or read from the database together with whatever came
before it (not yet seen), so delivery has no gap and no duplicate whichever path an event took.
``agent.delta`` events are live only: they carry no ``seq`` and are dropped, never queued, for a
subscriber that is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from backend.db.engine import READ_ONLY_OPTION
from backend.db.failures import unavailable_cause
from backend.db.models import RunEvent
from backend.db.repositories.run_events import RunEventRepository
from backend.db.repositories.runs import RunRepository
from backend.db.repositories.tasks import TaskRepository
from backend.db.types import utcnow
from backend.errors import NotFoundError
from backend.observability import metrics
from backend.observability.dependencies import DependencyWatch
from backend.services import run_states

logger = logging.getLogger("backend.events")

REDIS_CHANNEL = "mgx:run-events"
# With Redis healthy the poll is only a safety net for messages lost in transit.
SAFETY_POLL_SECONDS = 5.0
REPLAY_PAGE = 500
OUTBOX_LIMIT = 10_000
_STAGED = "mgx.staged_events"
_BROADCASTER = "mgx.event_broadcaster"
TERMINAL_TYPES = frozenset(f"run.{status}" for status in run_states.TERMINAL_STATUSES)


@dataclass(frozen=True)
class StreamEvent:
    """One event as subscribers see it; ``seq`` is None for live-only ``agent.delta``."""

    run_id: uuid.UUID
    task_id: uuid.UUID
    seq: int | None
    type: str
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: RunEvent, task_id: uuid.UUID) -> StreamEvent:
        return cls(row.run_id, task_id, row.seq, row.type, row.data, row.created_at)

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> StreamEvent:
        return cls(
            uuid.UUID(envelope["run_id"]),
            uuid.UUID(envelope["task_id"]),
            envelope["seq"],
            envelope["type"],
            envelope["data"],
            datetime.fromisoformat(envelope["created_at"]),
        )

    @property
    def terminal(self) -> bool:
        # "run.rejected" is also logged before a re-plan; only the status-carrying one ends the run.
        return self.type in TERMINAL_TYPES and self.data.get("status") == self.type.removeprefix("run.")

    def envelope(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "task_id": str(self.task_id),
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }

    # Encoded once per event, however many subscribers receive it.
    @cached_property
    def json_text(self) -> str:
        return json.dumps(self.envelope(), separators=(",", ":"), default=str)

    @cached_property
    def sse_bytes(self) -> bytes:
        head = f"id: {self.seq}\n" if self.seq is not None else ""
        return f"{head}event: {self.type}\ndata: {self.json_text}\n\n".encode()


def stage_committed_event(session: AsyncSession, event: StreamEvent) -> None:
    """Queue ``event`` for publication once the session's transaction commits."""
    session.info.setdefault(_STAGED, []).append(event)


def publish_committed(session_factory: async_sessionmaker[AsyncSession], events: list[StreamEvent]) -> None:
    """Publish events a Core transaction (no session) committed, as the session hook does."""
    broadcaster = session_factory.kw.get("info", {}).get(_BROADCASTER)
    if events and broadcaster is not None:
        broadcaster.publish(events)
        broadcaster.notify_commit_observers(events)


@orm_event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    staged = session.info.pop(_STAGED, None)
    broadcaster = session.info.get(_BROADCASTER)
    if staged and broadcaster is not None:
        broadcaster.publish(staged)
        broadcaster.notify_commit_observers(staged)


@orm_event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_STAGED, None)


class Subscription:
    """One subscriber's bounded inbox and cursors (one run, or every run of a task)."""

    def __init__(
        self,
        broadcaster: EventBroadcaster,
        *,
        task_id: uuid.UUID,
        cursors: dict[uuid.UUID, int],
        run_id: uuid.UUID | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.task_id = task_id
        self.run_id = run_id
        self.cursors = dict(cursors)
        self.overflows = 0
        self.closed = False
        self._pending: deque[StreamEvent] = deque()
        self._stale: set[uuid.UUID] = set(cursors)  # runs to (re)read from the database
        self._wake = asyncio.Event()
        self._wake.set()

    # Called by the broadcaster; never blocks.

    def offer(self, event: StreamEvent) -> None:
        if self.closed:
            return
        if len(self._pending) >= self.broadcaster.queue_size:
            if event.seq is None:
                return
            # Too far behind: forget the queue and catch up from the database instead.
            self._pending.clear()
            self._stale.update(self.cursors)
            self._stale.add(event.run_id)
            self.overflows += 1
        else:
            self._pending.append(event)
        self._wake.set()

    def nudge(self, run_id: uuid.UUID) -> None:
        if not self.closed:
            self._stale.add(run_id)
            self._wake.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pending.clear()
            self.broadcaster._unsubscribe(self)
            self._wake.set()

    # Called by the consumer.

    async def next_batch(self, idle_timeout: float | None = None) -> list[StreamEvent] | None:
        """The next events in order: at least one; ``[]`` after ``idle_timeout`` seconds without
        any; None once the subscription is closed. Never cancel a call that is not idle."""
        while not self.closed:
            self._wake.clear()
            batch: list[StreamEvent] = []
            while self._stale:
                batch.extend(await self._read_stored(self._stale.pop()))
            while self._pending:
                event = self._pending.popleft()
                if event.seq is None:
                    batch.append(event)
                    continue
                cursor = self.cursors.get(event.run_id, 0)
                if event.seq == cursor + 1:
                    batch.append(event)
                    self.cursors[event.run_id] = event.seq
                elif event.seq > cursor + 1:
                    batch.extend(await self._read_stored(event.run_id))
            if batch:
                return batch
            if self.closed:
                break
            if idle_timeout is None:
                await self._wake.wait()  # the live path of every subscriber: no timer, no wrapper
                continue
            try:
                async with asyncio.timeout(idle_timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        return None

    async def _read_stored(self, run_id: uuid.UUID) -> list[StreamEvent]:
        cursor = self.cursors.get(run_id, 0)
        rows = await self.broadcaster.read_stored(run_id, cursor)
        if len(rows) == REPLAY_PAGE:
            self._stale.add(run_id)  # more to read; keep batches bounded
        if rows:
            self.cursors[run_id] = rows[-1].seq
        return [StreamEvent.from_row(row, self.task_id) for row in rows]


class EventBroadcaster:
    """The process's single event publisher and its subscriber registry."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        redis: Any | None,
        poll_seconds: float,
        queue_size: int,
        stream_deltas: bool,
    ) -> None:
        self.session_factory = session_factory
        self.redis = redis
        self.poll_seconds = poll_seconds
        self._poll_watch = DependencyWatch("database", logger, unavailable_cause)
        self.queue_size = queue_size
        self.stream_deltas = stream_deltas
        self.origin = uuid.uuid4().hex
        self.redis_healthy = False
        self._by_run: dict[uuid.UUID, set[Subscription]] = {}
        self._by_task: dict[uuid.UUID, set[Subscription]] = {}
        self._heads: dict[uuid.UUID, int] = {}  # highest seq this process has seen, per watched run
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_LIMIT)
        self._poll_now = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._commit_observers: list[Callable[[list[StreamEvent]], None]] = []
        self.serve(session_factory)

    def serve(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        """Publish what the sessions of ``session_factory`` commit (staged events)."""
        session_factory.configure(info={_BROADCASTER: self})

    # Lifecycle

    async def start(self) -> None:
        self._loops.append(asyncio.create_task(self._poll(), name="events-poll"))
        if self.redis is not None:
            self._loops.append(asyncio.create_task(self._listen_redis(), name="events-redis-listen"))
            self._loops.append(asyncio.create_task(self._publish_redis(), name="events-redis-publish"))

    async def close(self) -> None:
        """End every open stream (they see ``next_batch() is None``) and stop the relays."""
        for subscription in [*self._subscriptions()]:
            subscription.close()
        # Give events committed during shutdown a moment to reach the other processes.
        for _ in range(100):
            if self._outbox.empty() or not self.redis_healthy:
                break
            await asyncio.sleep(0.01)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    @property
    def subscriber_count(self) -> int:
        return len(set(self._subscriptions()))

    @property
    def relay(self) -> str:
        """How events of other processes arrive here right now."""
        return "redis" if self.redis is not None and self.redis_healthy else "database-poll"

    # Subscribing

    async def subscribe_run(
        self, run_id: uuid.UUID, after: int, *, owner: str | None = None
    ) -> Subscription | None:
        """A subscription replaying ``run_id``'s events after ``after`` then following live ones;
        None when the run is finished and nothing is left to replay. With ``owner``, a run of
        another owner does not exist for the caller."""
        async with self._read_session() as session:
            run = await RunRepository(session).get(run_id)
            if run is None or (owner is not None and run.owner != owner):
                raise NotFoundError(f"run {run_id} does not exist")
            if run.status in run_states.TERMINAL_STATUSES and run.next_event_seq - 1 <= after:
                return None
            subscription = Subscription(self, task_id=run.task_id, cursors={run_id: after}, run_id=run_id)
        self._by_run.setdefault(run_id, set()).add(subscription)
        metrics.EVENT_SUBSCRIBERS.inc()
        self._poll_now.set()
        return subscription

    async def subscribe_task(self, task_id: uuid.UUID, *, owner: str | None = None) -> Subscription:
        """A subscription to the events of every run of the task from now on (new runs from
        their first event). With ``owner``, a task of another owner does not exist for the caller."""
        async with self._read_session() as session:
            task = await TaskRepository(session).get(task_id)
            if task is None or (owner is not None and task.owner != owner):
                raise NotFoundError(f"task {task_id} does not exist")
            heads = await RunEventRepository(session).heads((), (task_id,))
        subscription = Subscription(self, task_id=task_id, cursors={run_id: head for run_id, _, head in heads})
        self._by_task.setdefault(task_id, set()).add(subscription)
        metrics.EVENT_SUBSCRIBERS.inc()
        self._poll_now.set()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        index, key = (self._by_run, subscription.run_id) if subscription.run_id else (self._by_task, subscription.task_id)
        members = index.get(key)
        if members is not None and subscription in members:
            members.discard(subscription)
            metrics.EVENT_SUBSCRIBERS.dec()
            if not members:
                del index[key]

    def _subscriptions(self) -> Iterable[Subscription]:
        for members in [*self._by_run.values(), *self._by_task.values()]:
            yield from members

    # Publishing

    def observe_commits(self, observer: Callable[[list[StreamEvent]], None]) -> None:
        """Call ``observer`` with every batch of events this process commits (metrics), once per
        commit; it runs inside the commit, so it must be quick and must not raise."""
        self._commit_observers.append(observer)

    def notify_commit_observers(self, events: list[StreamEvent]) -> None:
        for observer in self._commit_observers:
            try:
                observer(events)
            except Exception:
                logger.exception("a commit observer failed; the events are committed regardless")

    def publish(self, events: list[StreamEvent]) -> None:
        """Fan committed events out here and, through Redis, to other processes."""
        self._dispatch(events)
        if self.redis is not None:
            self._send_to_redis(events)

    def publish_delta(self, run_id: uuid.UUID, task_id: uuid.UUID, data: dict[str, Any]) -> None:
        """A live token delta: streamed, never stored; off when ``MGX_STREAM_DELTAS`` is false."""
        if self.stream_deltas:
            self.publish([StreamEvent(run_id, task_id, None, "agent.delta", data, utcnow())])

    def _dispatch(self, events: Iterable[StreamEvent]) -> None:
        for event in events:
            by_run, by_task = self._by_run.get(event.run_id, ()), self._by_task.get(event.task_id, ())
            if not by_run and not by_task:
                continue
            if event.seq is not None and event.seq > self._heads.get(event.run_id, 0):
                self._heads[event.run_id] = event.seq
            for subscription in by_run:
                subscription.offer(event)
            for subscription in by_task:
                subscription.offer(event)

    def _send_to_redis(self, events: list[StreamEvent]) -> None:
        payload = json.dumps({"origin": self.origin, "events": [json.loads(event.json_text) for event in events]})
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            # Other processes find these events with their database poll.
            logger.warning("Redis event outbox full; %d event(s) left to the database poll", len(events))

    # Reading the log

    def _read_session(self) -> AsyncSession:
        return self.session_factory()

    async def read_stored(self, run_id: uuid.UUID, after: int) -> list[RunEvent]:
        async with self._read_session() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            return list(await RunEventRepository(session).list_after(run_id, after, REPLAY_PAGE))

    # Relays from other processes

    async def _poll(self) -> None:
        """Find events other processes wrote that no notification brought (no Redis, or lost)."""
        while True:
            interval = max(self.poll_seconds, SAFETY_POLL_SECONDS) if self.relay == "redis" else self.poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), interval)
            self._poll_now.clear()
            if not self._by_run and not self._by_task:
                self._heads.clear()
                continue
            try:
                await self._poll_once()
                self._poll_watch.succeeded()
            except Exception as exc:
                # Once per outage, not every poll: the watch logs the first failure and the return.
                self._poll_watch.failed(exc, "polling the event log")

    async def _poll_once(self) -> None:
        async with self._read_session() as session:
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            heads = await RunEventRepository(session).heads(list(self._by_run), list(self._by_task))
        watched: dict[uuid.UUID, int] = {}
        for run_id, task_id, head in heads:
            known = self._heads.get(run_id)
            if known is None:
                # First sight of this run here: each subscriber checks its own cursor once.
                for subscription in [*self._by_run.get(run_id, ()), *self._by_task.get(task_id, ())]:
                    subscription.nudge(run_id)
                watched[run_id] = head
                continue
            if head > known:
                # Read the new events once for all local subscribers.
                self._dispatch(StreamEvent.from_row(row, task_id) for row in await self.read_stored(run_id, known))
            watched[run_id] = max(self._heads.get(run_id, known), known)
        self._heads = watched

    async def _listen_redis(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(REDIS_CHANNEL)
                if not self.redis_healthy:
                    logger.info("live events relayed through Redis")
                self.redis_healthy, backoff = True, 0.5
                # Whatever was published while we were not subscribed: catch up from the log.
                self._poll_now.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.redis_healthy or backoff == 0.5:
                    logger.warning("Redis event relay unavailable (%s); polling the database instead", exc)
                self.redis_healthy = False
                self._poll_now.set()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _receive(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            if message.get("origin") == self.origin:
                return
            events = [StreamEvent.from_envelope(item) for item in message["events"]]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed event message on %s: %s", REDIS_CHANNEL, exc)
            return
        self._dispatch(events)

    async def _publish_redis(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self.redis.publish(REDIS_CHANNEL, payload)
            except Exception as exc:
                # Subscribers elsewhere still get these events from their database poll.
                logger.debug("publishing events to Redis failed: %s", exc)
