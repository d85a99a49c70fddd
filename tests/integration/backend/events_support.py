"""Helpers for the live-event tests: the app served by uvicorn inside the test's event loop (SSE
and WebSocket need a real socket), an SSE reader, and an event producer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from backend.db.models import Run
from backend.services.run_journal import record_event


@dataclass
class LiveApp:
    app: FastAPI
    base_url: str
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[LiveApp]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn stopped during start-up"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        try:
            yield LiveApp(app, base_url, http)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15)


@dataclass(frozen=True)
class SSEMessage:
    id: str | None
    event: str
    data: dict[str, Any]

    @property
    def seq(self) -> int | None:
        return self.data.get("seq")


async def read_sse(response: httpx.Response, *, until_closed: bool = True) -> AsyncIterator[SSEMessage]:
    """Parse an SSE response into messages (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if "data" in fields:
                yield SSEMessage(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


async def collect_sse(
    http: httpx.AsyncClient, run_id: str, *, after: int | None = None, headers: dict[str, str] | None = None
) -> list[SSEMessage]:
    params = {} if after is None else {"after": after}
    async with http.stream("GET", f"/runs/{run_id}/events", params=params, headers=headers, timeout=30) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [message async for message in read_sse(response)]


async def produce_events(app: FastAPI, run_id: str, count: int, label: str) -> None:
    """Append ``count`` run.log events, one committed transaction each."""
    for index in range(count):
        async with app.state.session_factory() as session:
            run = await session.get(Run, uuid.UUID(run_id), with_for_update=True)
            await record_event(session, run, "run.log", {"producer": label, "index": index})
            await session.commit()
        if index % 7 == 0:
            await asyncio.sleep(0)


async def create_queued_run(http: httpx.AsyncClient, config: dict[str, Any] | None = None) -> dict[str, Any]:
    task = await http.post("/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)", "config": config or {}})
    assert task.status_code == 201, task.text
    run = await http.post("/runs/", json={"task_id": task.json()["id"]})
    assert run.status_code == 201, run.text
    return run.json()


def assert_contiguous(messages: list[SSEMessage], first: int, last: int) -> None:
    seqs = [message.seq for message in messages if message.seq is not None]
    assert seqs == list(range(first, last + 1)), f"expected {first}..{last}, got {seqs[:5]}...{seqs[-5:]} ({len(seqs)})"
    for message in messages:
        if message.seq is not None:
            assert message.id == str(message.seq) and message.event == message.data["type"]
