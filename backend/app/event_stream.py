"""``EventStreamResponse``: the Server-Sent Events response of the live-event routes.

One event reaches hundreds of open streams at once, so what a stream costs per message is what
fan-out latency is made of. Here the body iterator runs in the request's own task and each
chunk goes out in one ``send``, with no cancel scope, lock or timer made per message; one more
task per stream waits for the client to go away and sends the keep-alive comment. The stop of
the process reaches a stream through a callback, not a task of its own. (sse-starlette's
``EventSourceResponse``, used before, ran four tasks per stream and made a cancel scope per
message: docs/architecture.md, "Event fan-out".)

The body ends by itself once its subscription closes: ``on_close`` is called when the client
disconnects and when the process begins to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend.app.shutdown import GracefulShutdown

PING = b": ping\n\n"


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        *,
        ping_seconds: float,
        shutdown: GracefulShutdown,
        on_close: Callable[[], None],
        status_code: int = 200,
    ) -> None:
        # As StreamingResponse does: no body, so no Content-Length.
        self.status_code = status_code
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.chunks = chunks
        self.ping_seconds = ping_seconds
        self.shutdown = shutdown
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        watcher = asyncio.create_task(self._watch_client(receive, send))
        forget_stop = self.shutdown.on_stopping(self.on_close)
        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            forget_stop()
            watcher.cancel()
            await asyncio.wait({watcher})  # no keep-alive comment may follow the last message
            await self.chunks.aclose()  # its cleanup runs now, however the stream ended
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_client(self, receive: Receive, send: Send) -> None:
        """A keep-alive comment every ``ping_seconds`` until the client goes away."""
        disconnected = asyncio.create_task(_until_disconnect(receive))
        try:
            while not (await asyncio.wait({disconnected}, timeout=self.ping_seconds))[0]:
                await send({"type": "http.response.body", "body": PING, "more_body": True})
            self.on_close()
        finally:
            disconnected.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
