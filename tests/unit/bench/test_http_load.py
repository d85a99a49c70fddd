"""The benchmarks' HTTP/1.1 load driver against a real loopback server, and its percentiles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from itertools import cycle

import pytest
from mgx_agent.testing.fake_llm import FakeLLMServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.http_load import Sample, drive, encode_request


async def _fixed(_: Request) -> Response:
    return PlainTextResponse("x" * 300)


async def _chunked(_: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 100

    return StreamingResponse(parts())


async def _echo(request: Request) -> Response:
    return JSONResponse({"received": json.loads(await request.body()), "auth": request.headers.get("authorization")},
                        status_code=201)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    """A uvicorn server on a loopback port (the fake LLM server's machinery, with our routes)."""
    server = FakeLLMServer()
    server.app = Starlette(routes=[Route("/fixed", _fixed), Route("/chunked", _chunked),
                                   Route("/echo", _echo, methods=["POST"])])
    with server:
        yield server


async def test_drive_reads_sized_and_chunked_responses_on_kept_alive_connections(server: FakeLLMServer) -> None:
    requests = cycle([encode_request("GET", "/fixed", b"", {}), encode_request("GET", "/chunked", b"", {})])
    sample = Sample()

    await drive(server.port, requests, 200, 0.3, sample, concurrency=2)

    assert len(sample.latencies) > 10
    assert not sample.errors
    assert 0.3 <= sample.seconds < 1.0


async def test_drive_sends_bodies_and_headers_and_counts_unexpected_statuses(server: FakeLLMServer) -> None:
    request = encode_request("POST", "/echo", b'{"title": "t"}', {"Authorization": "Bearer k"})
    sample = Sample()

    await drive(server.port, cycle([request]), 200, 0.2, sample, concurrency=1)

    assert sample.errors == {"201": len(sample.latencies)}
    assert request.endswith(b'\r\n\r\n{"title": "t"}')
    assert b"Content-Length: 14\r\n" in request and b"Authorization: Bearer k\r\n" in request


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    sample = Sample(latencies=[i / 1000 for i in range(100, 0, -1)], seconds=2.0)

    assert sample.percentile_ms(0.50) == pytest.approx(50.0)
    assert sample.percentile_ms(0.99) == pytest.approx(99.0)
    assert sample.requests_per_second == 50.0
