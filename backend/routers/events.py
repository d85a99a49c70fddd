"""Live run events over Server-Sent Events (``GET /runs/{id}/events``) and WebSocket
(``/ws/runs/{id}``, ``/ws/tasks/{id}``). Replay, cursors and fan-out live in ``services/events``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, WebSocket, status
from starlette.websockets import WebSocketDisconnect, WebSocketState

from backend.access import owner_filter
from backend.app.auth import PrincipalDep
from backend.app.deps import MAX_EVENT_SEQ, SettingsDep
from backend.app.event_stream import EventStreamResponse
from backend.app.limits import hold_stream_slot
from backend.app.shutdown import GracefulShutdown
from backend.errors import NotFoundError
from backend.schemas.problem import error_responses
from backend.services.events import EventBroadcaster, Subscription

router = APIRouter(prefix="/runs", tags=["events"])
# Every route here is a stream: each holds one of the caller's stream slots while open.
ws_router = APIRouter(tags=["events"], dependencies=[Depends(hold_stream_slot)])

# WebSocket close codes: 4000 + the HTTP status they stand for (README, "Live events").
CLOSE_NOT_FOUND = 4404
CLOSE_INVALID_CURSOR = 4422
PING_MESSAGE = '{"type":"ping"}'
# Tells EventSource to reconnect 1 s after a dropped connection (its default is about 3 s).
RECONNECT_HINT = b"retry: 1000\n\n"
# Last words of a stream ended by a server shutdown; the client reconnects (retry: 1000) and resumes.
SHUTDOWN_NOTICE = b": server shutting down; reconnect with Last-Event-ID\n\n"

RunId = Annotated[uuid.UUID, Path(description="The run's id.")]


def _broadcaster(app_state: object) -> EventBroadcaster:
    return app_state.events  # type: ignore[attr-defined]


@router.get(
    "/{run_id}/events",
    summary="Follow a run's events live (Server-Sent Events)",
    description=(
        "Replays the stored events after the cursor (`Last-Event-ID` header, else `after`), then "
        "follows live ones, with no gap and no duplicate. Each message is `id: <seq>`, "
        "`event: <type>`, `data: <json>`; `agent.delta` messages have no `id` (they are not "
        "stored). A comment is sent every `EVENTS_KEEPALIVE_SECONDS`. The stream ends after the "
        "run's terminal event; a finished run with nothing left to replay answers 204, which "
        "also stops a browser's EventSource from reconnecting."
    ),
    response_class=EventStreamResponse,
    dependencies=[Depends(hold_stream_slot)],
    responses={
        200: {"description": "The event stream.", "content": {"text/event-stream": {}}},
        204: {"description": "The run is finished and every event was already delivered."},
        **error_responses(404, 422, 429),
    },
)
async def stream_run_events(
    run_id: RunId,
    request: Request,
    settings: SettingsDep,
    principal: PrincipalDep,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ, description="Replay events with seq greater than this.")] = 0,
    last_event_id: Annotated[
        int,
        Header(
            alias="Last-Event-ID", ge=0, le=MAX_EVENT_SEQ, description="Sent by EventSource on reconnect; wins over `after`."
        ),
    ] = None,
) -> Response:
    cursor = after if last_event_id is None else last_event_id
    events = _broadcaster(request.app.state)
    subscription = await events.subscribe_run(run_id, cursor, owner=owner_filter(principal))
    if subscription is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    shutdown: GracefulShutdown = request.app.state.shutdown
    return EventStreamResponse(
        _sse_body(subscription, shutdown),
        ping_seconds=settings.events_keepalive_seconds,
        shutdown=shutdown,
        on_close=subscription.close,
    )


async def _sse_body(subscription: Subscription, shutdown: GracefulShutdown) -> AsyncGenerator[bytes, None]:
    """Pre-encoded SSE messages, one chunk per batch; ends after the terminal event, or when the
    subscription closes (the client went away, or the process is stopping: then with a notice)."""
    try:
        yield RECONNECT_HINT
        while (batch := await subscription.next_batch()) is not None:
            chunk = bytearray()
            for event in batch:
                chunk += event.sse_bytes
                if event.terminal:
                    yield bytes(chunk)
                    return
            yield bytes(chunk)
        if shutdown.stopping:
            yield SHUTDOWN_NOTICE
    finally:
        subscription.close()


@ws_router.websocket("/ws/runs/{run_id}")
async def run_events_socket(
    websocket: WebSocket,
    run_id: str,
    principal: PrincipalDep,
    after: str = "0",
) -> None:
    """The run's events as JSON messages (replay after ``after``, then live); closes with 1000
    after the terminal event, 4404 for an unknown run, 4422 when ``after`` is not an event number
    (0 to 2^63-1). The cursor is checked after the handshake, so the client is told why."""
    cursor = _event_cursor(after)
    if cursor is None:
        await websocket.accept()
        await websocket.close(code=CLOSE_INVALID_CURSOR, reason="after must be an integer from 0 to 2^63-1")
        return
    events = _broadcaster(websocket.app.state)
    owner = owner_filter(principal)
    await _serve_socket(
        websocket, lambda: events.subscribe_run(uuid.UUID(run_id), cursor, owner=owner), end_at_terminal=True
    )


def _event_cursor(text: str) -> int | None:
    """``text`` as an event number, or None when it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MAX_EVENT_SEQ else None


@ws_router.websocket("/ws/tasks/{task_id}")
async def task_events_socket(websocket: WebSocket, task_id: str, principal: PrincipalDep) -> None:
    """Live events of every run of the task from now on (new runs from their first event)."""
    events = _broadcaster(websocket.app.state)
    owner = owner_filter(principal)
    await _serve_socket(
        websocket, lambda: events.subscribe_task(uuid.UUID(task_id), owner=owner), end_at_terminal=False
    )


async def _serve_socket(
    websocket: WebSocket,
    subscribe: Callable[[], Awaitable[Subscription | None]],
    *,
    end_at_terminal: bool,
) -> None:
    await websocket.accept()
    try:
        subscription = await subscribe()
    except (NotFoundError, ValueError):
        await websocket.close(code=CLOSE_NOT_FOUND, reason="not found")
        return
    if subscription is None:
        await websocket.close(code=status.WS_1000_NORMAL_CLOSURE, reason="run finished")
        return
    ping_seconds = websocket.app.state.settings.events_keepalive_seconds
    sender = asyncio.create_task(_send_events(websocket, subscription, ping_seconds, end_at_terminal))
    receiver = asyncio.create_task(_until_disconnect(websocket))
    # A draining process (SIGTERM) closes its sockets with 1001 so clients reconnect elsewhere.
    draining = asyncio.create_task(websocket.app.state.shutdown.wait_draining())
    try:
        await asyncio.wait({sender, receiver, draining}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.close()
        for task in (sender, receiver, draining):
            task.cancel()
        await asyncio.gather(sender, receiver, draining, return_exceptions=True)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=status.WS_1001_GOING_AWAY)


async def _send_events(
    websocket: WebSocket, subscription: Subscription, ping_seconds: float, end_at_terminal: bool
) -> None:
    while (batch := await subscription.next_batch(idle_timeout=ping_seconds)) is not None:
        if not batch:
            await websocket.send_text(PING_MESSAGE)
            continue
        for event in batch:
            await websocket.send_text(event.json_text)
            if end_at_terminal and event.terminal:
                await websocket.close(code=status.WS_1000_NORMAL_CLOSURE, reason="run finished")
                return


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) client messages until the client goes away."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
