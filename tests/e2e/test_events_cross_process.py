"""Live events across processes: a subscriber on API process A follows a run that process B
executes, both on one PostgreSQL database, through Redis pub/sub and, with Redis down, through
the database poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mgx_agent.testing.fake_llm import FakeLLMServer
from tests.e2e.conftest import ApiServer, free_port
from tests.e2e.events_support import api_process, iter_sse

pytestmark = pytest.mark.slow


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def start_pair(tmp_path: Path, database_url: str, fake_llm: FakeLLMServer, **shared: object) -> tuple[ApiServer, ApiServer]:
    common = {
        "database_url": database_url,
        "db_auto_migrate": "false",
        "mgx_llm_base_url": fake_llm.base_url,
        "mgx_llm_api_key": "test-key",
        "runner_poll_seconds": 0.2,
        **shared,
    }
    subscriber_side = api_process("a", tmp_path, runner_workers=0, **common)
    executor_side = api_process("b", tmp_path, runner_workers=1, **common)
    return subscriber_side.start(), executor_side.start()


def follow_run_across_processes(a: ApiServer, b: ApiServer) -> float:
    """Subscribe on A, let B plan and (after approval) execute; returns seconds from approval to
    the terminal event, after checking the stream against the stored log."""
    with httpx.Client(base_url=a.base_url, timeout=30) as client:
        task = client.post("/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)"}).json()
        run = client.post("/runs/", json={"task_id": task["id"]}).json()
        received, approved_at = [], 0.0
        with client.stream("GET", f"/runs/{run['id']}/events") as response:
            assert response.status_code == 200
            for event_id, event_type, data in iter_sse(response):
                received.append((event_id, event_type, data))
                if event_type == "run.approval_required":
                    approved_at = time.monotonic()
                    assert client.post(f"/runs/{run['id']}/approve", json={}).status_code == 200
        elapsed = time.monotonic() - approved_at
        logged = client.get(f"/runs/{run['id']}/logs", params={"limit": 1000}).json()["items"]
    assert approved_at, "the plan never reached A"
    assert received[-1][1] == "run.completed"
    assert [(int(i), t, d["data"]) for i, t, d in received] == [(e["seq"], e["type"], e["data"]) for e in logged]
    claims = [d["data"]["worker"] for _, t, d in received if t == "run.status" and "worker" in d["data"]]
    assert claims and all(f":{b.process.pid}:" in worker for worker in claims), claims
    return elapsed


def test_events_reach_a_subscriber_on_another_process_through_redis(
    tmp_path: Path, postgres_url: str, fake_llm: FakeLLMServer, redis_url: str
) -> None:
    # A polls the database only every 30 s, so prompt delivery can only have come through Redis.
    a, b = start_pair(tmp_path, postgres_url, fake_llm, redis_url=redis_url, events_poll_seconds=30)
    try:
        assert follow_run_across_processes(a, b) < 10, a.log_tail()
    finally:
        a.stop()
        b.stop()


def test_events_reach_another_process_through_the_database_when_redis_is_down(
    tmp_path: Path, postgres_url: str, fake_llm: FakeLLMServer
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: a Redis that is down
    a, b = start_pair(tmp_path, postgres_url, fake_llm, redis_url=down, events_poll_seconds=0.2)
    try:
        assert follow_run_across_processes(a, b) < 20, a.log_tail()
        assert "polling the database instead" in a.log_tail(200)
    finally:
        a.stop()
        b.stop()
