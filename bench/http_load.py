"""A small HTTP/1.1 load generator for the benchmarks: keep-alive connections over asyncio
streams that send prepared requests back to back, recording each response's latency and status.
It parses just enough HTTP (status, Content-Length, chunked bodies, Connection: close) to stay
cheap next to the servers it measures; run it on uvloop (``run_loop``) when installed."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Sample:
    """Requests of one app in one scenario, accumulated over its slices."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Nearest rank (no interpolation: a reported value really happened)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(1, min(len(ordered), math.ceil(fraction * len(ordered)))) - 1] * 1000

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds * 1e6 / len(self.latencies) if self.latencies else math.nan


def encode_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request, ready to write; a non-empty ``body`` is sent as JSON."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns its status and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in header_lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = b"close" in value
    if chunked:
        while size := int((await reader.readline()).split(b";", 1)[0], 16):
            await reader.readexactly(size + 2)
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # trailers
    elif length:
        await reader.readexactly(length)
    return status, close


async def drive(port: int, requests: Iterator[bytes], expected: int, seconds: float, sample: Sample | None,
                concurrency: int) -> None:
    """``concurrency`` connections sending requests back to back for ``seconds``; recorded into
    ``sample`` unless it is None (warm-up)."""
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (sent := time.perf_counter()) < deadline:
                writer.write(next(requests))
                status, close = await read_response(reader)
                if sample is not None:
                    sample.latencies.append(time.perf_counter() - sent)
                    if status != expected:
                        sample.errors[str(status)] += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    if sample is not None:
        sample.seconds += time.perf_counter() - started


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
