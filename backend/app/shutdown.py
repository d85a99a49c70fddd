"""Graceful shutdown of one API process: drain first, then let the server stop.

Left alone, uvicorn answers SIGTERM by closing its listening socket at once and only then runs
the lifespan shutdown, so nobody could see the process turn "not ready", and open event streams
would be cut mid-message. So, once the app has started, each worker process takes SIGTERM and
SIGINT over from uvicorn's ``Server.handle_exit`` (``install_signal_handlers``). The first signal
starts the drain while the server keeps serving:

1. ``draining`` turns true: ``/health/ready`` answers 503 naming the check ``shutdown``;
   SSE streams end cleanly (their clients resume elsewhere with ``Last-Event-ID``) and
   WebSockets close with 1001 (going away); streams opened meanwhile end the same way.
2. The runner stops claiming, gives in-flight phases ``RUNNER_SHUTDOWN_GRACE_SECONDS``, then
   hands every unfinished run back to the queue (``BackgroundTaskRunner.stop``).
3. The server is asked to exit the documented way (``Server.should_exit = True``): it stops
   listening, closes idle connections, runs the lifespan shutdown (the drain is already done)
   and returns.

uvicorn never saw that first signal, so it does not re-raise it when it returns (which it does
since 0.29, making the exit status 143) and the process exits 0. A second signal goes straight
to uvicorn's own handler: stop serving now (and, for a second Ctrl+C, skip the lifespan
shutdown; leases then expire and other processes recover the runs).

Without uvicorn's handler (tests through ASGI transports, other servers) nothing is installed,
and the lifespan shutdown runs the same drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from backend.services.background import BackgroundTaskRunner

logger = logging.getLogger("backend.shutdown")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How often open streams' stop is checked against a server told to exit without a signal.
EXIT_WATCH_SECONDS = 0.5


def _forget_nothing() -> None:
    pass


class GracefulShutdown:
    """The process's drain: one per app, started by a signal or by the lifespan shutdown."""

    def __init__(self, runner: BackgroundTaskRunner) -> None:
        self.runner = runner
        self._draining = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._signalled = False
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}
        self._stopping = False
        self._stop_callbacks: set[Callable[[], None]] = set()
        self._exit_watch: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    async def wait_draining(self) -> None:
        """Return once the drain has begun (at once if it already has)."""
        await self._draining.wait()

    @property
    def stopping(self) -> bool:
        """The process has begun to stop: the drain began, or the server was told to exit some
        other way (seen within ``EXIT_WATCH_SECONDS``)."""
        return self._stopping or self.draining or self.should_exit

    def on_stopping(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once, when the process begins to stop (at once if it has); returns
        the function that forgets it. Open streams register here, so a stream costs no task of
        its own to learn of the stop."""
        if self.stopping:
            callback()
            return _forget_nothing
        self._stop_callbacks.add(callback)
        return lambda: self._stop_callbacks.discard(callback)

    def _begin_stopping(self) -> None:
        self._stopping = True
        callbacks, self._stop_callbacks = self._stop_callbacks, set()
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("a stop callback failed; stopping regardless")

    async def drain(self) -> None:
        """Stop taking work and let in-flight work finish or go back to the queue. Idempotent:
        every caller waits for the same single drain."""
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(), name="graceful-shutdown")
        await asyncio.shield(self._drain_task)

    async def _drain(self) -> None:
        started = time.monotonic()
        self._draining.set()
        self._begin_stopping()
        logger.info(
            "draining: not ready, streams closed, no new runs claimed; in-flight phases get up to %ss",
            self.runner.config.shutdown_grace_seconds,
        )
        await self.runner.stop()
        logger.info("drained in %.2fs", time.monotonic() - started)

    # Signals

    @property
    def should_exit(self) -> bool:
        """The server's own exit flag. Code that finds the uvicorn server through the SIGTERM
        handler (sse-starlette ends its streams when ``should_exit`` turns true) finds this object
        while the signals are ours, so it must still see a server told to exit some other way."""
        return bool(getattr(self._server, "should_exit", False))

    def install_signal_handlers(self) -> bool:
        """Take SIGTERM/SIGINT over from the uvicorn server running this app; False (and nothing
        changed) when no uvicorn server handles them in this thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if isinstance(server, GracefulShutdown):  # another app served by the same process
            server = server._server
        if server is None or not hasattr(server, "should_exit"):
            return False
        self._server = server
        self._loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._exit_watch = asyncio.create_task(self._watch_exit(), name="shutdown-exit-watch")
        return True

    async def _watch_exit(self) -> None:
        # The server's exit flag has no callback: look at it, as sse-starlette's streams did.
        while not self.should_exit:
            await asyncio.sleep(EXIT_WATCH_SECONDS)
        self._begin_stopping()

    def restore_signal_handlers(self) -> None:
        """Give the signals back to the server (lifespan shutdown)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()
        if self._exit_watch is not None:
            self._exit_watch.cancel()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes: only hand over to the event loop here.
        if self._signalled or self.draining:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            return
        self._signalled = True
        logger.info(
            "%s received: draining before shutdown (send it again to stop at once)", signal.Signals(signum).name
        )
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._start_drain_then_exit)

    def _start_drain_then_exit(self) -> None:
        self._exit_task = asyncio.create_task(self._drain_then_exit(), name="graceful-shutdown-exit")

    async def _drain_then_exit(self) -> None:
        try:
            await self.drain()
        except Exception:
            logger.exception("draining failed; stopping the server anyway")
        finally:
            self._server.should_exit = True
