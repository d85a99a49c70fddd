"""A loopback TCP proxy that can stop answering, to make a real dependency hang on demand.

While open it forwards to its target. Stalled, it still accepts connections (as the kernel of a
wedged server does) but answers nothing: new connections wait forever for a greeting and bytes
on open ones are held. Without a target it is a black hole from the start.
"""

from __future__ import annotations

import asyncio
import contextlib


class StallingProxy:
    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self.port = 0
        self._open = asyncio.Event()
        if target is not None:
            self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def stall(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        if self.target is not None:
            self._open.set()

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._open.wait()
            assert self.target is not None
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            self._writers.append(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
