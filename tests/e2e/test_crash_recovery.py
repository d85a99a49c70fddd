"""Crash recovery across processes: an API process killed with SIGKILL mid-run loses its lease,
and another process resumes the run after its last checkpoint and completes it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from mgx_agent.testing.fake_llm import FakeLLMServer

from tests.e2e.conftest import (
    ApiServer,
    RequestSpans,
    ServerFactory,
    assert_one_holder_at_a_time,
    create_task_and_run,
    llm_calls,
    run_events,
    run_row,
    service_env,
    wait_for_terminal,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEASE_SECONDS = 3
LLM_LATENCY_SECONDS = 0.4
PHASES = ("planning", "coding", "testing", "verifying", "reviewing")
# The LLM actions each phase calls (verifying runs the sandbox, no LLM).
PHASE_ACTIONS = {
    "planning": ("AnalyzeTask", "DraftPlan"),
    "coding": ("WriteCode",),
    "testing": ("WriteTest",),
    "verifying": (),
    "reviewing": ("ReviewCode",),
}


def finished_phases(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["phase"] for e in events if e["type"] == "run.phase" and e["data"]["state"] == "finished"]


def wait_for_phase(client: httpx.Client, run_id: str, phase: str, state: str) -> None:
    wait_until(
        lambda: any(
            e["type"] == "run.phase" and e["data"]["phase"] == phase and e["data"]["state"] == state
            for e in run_events(client, run_id)
        ),
        timeout=15,
        what=f"run {run_id}: phase {phase} {state}",
    )


def test_killed_worker_run_resumes_after_last_checkpoint_in_another_process(
    postgres_url: str, fake_llm: tuple[FakeLLMServer, RequestSpans], api_servers: ServerFactory
) -> None:
    fake, spans = fake_llm
    fake.latency_seconds = LLM_LATENCY_SECONDS
    env = service_env(
        postgres_url,
        fake.base_url,
        RUNNER_WORKERS=2,
        RUNNER_LEASE_SECONDS=LEASE_SECONDS,
        RUNNER_HEARTBEAT_SECONDS=0.5,
        RUNNER_POLL_SECONDS=0.5,
    )
    first: ApiServer = api_servers(env, name="first")
    with httpx.Client(base_url=first.base_url, timeout=5) as client:
        run_id = create_task_and_run(client, "Crash-safe fizzbuzz", "fizzbuzz up to n, survives a crash")["id"]
        wait_for_phase(client, run_id, "coding", "finished")
        before = client.get(f"/runs/{run_id}").json()
    first.kill()

    assert before["status"] == "running", before
    assert before["plan"], "the plan is on the run before the crash"
    assert before["attempt"] == 0
    assert f":{first.pid}:" in (before["lease_owner"] or ""), before["lease_owner"]
    at_kill = run_row(postgres_url, run_id)
    assert at_kill["status"] == "running" and at_kill["lease_owner"] == before["lease_owner"], at_kill
    dead_lease_expires = at_kill["lease_expires_at"]
    killed_at = time.time()

    second: ApiServer = api_servers(env, name="second")
    with httpx.Client(base_url=second.base_url, timeout=5) as client:
        final = wait_for_terminal(client, run_id, timeout=LEASE_SECONDS + 12)
        events = run_events(client, run_id)
    recovered_in = time.time() - killed_at

    assert final["status"] == "completed", (final["status"], final["error"])
    assert final["attempt"] == 1, "recovery after the lease expired counts one more attempt"
    assert final["plan"] == before["plan"], "the plan was kept, not regenerated"

    # Exactly one worker at a time: the dead process's lease ended (reaped) before the next claim.
    workers = assert_one_holder_at_a_time(events)
    assert len(workers) == 2 and workers[0] != workers[1], workers
    assert f":{first.pid}:" in workers[0] and f":{second.pid}:" in workers[1], workers
    requeue = next(e for e in events if e["type"] == "run.status" and e["data"]["status"] == "queued")
    assert requeue["data"]["reason"] == "lease expired"
    assert requeue["data"]["previous_owner"] == workers[0]
    second_claim = [e for e in events if e["type"] == "run.status" and "worker" in e["data"]][1]
    assert second_claim["data"]["status"] == "running", "a planned run resumes execution, not planning"
    assert datetime.fromisoformat(second_claim["created_at"]) >= dead_lease_expires, (
        "the second process claimed the run before the first one's lease expired"
    )

    # Resumed after its last checkpoint: nothing finished before the crash ran again.
    done_before = finished_phases([e for e in events if e["seq"] < requeue["seq"]])
    assert done_before[:2] == ["planning", "coding"], done_before
    resumed = [e for e in events if e["seq"] > second_claim["seq"] and e["type"] == "run.phase"]
    next_phase = PHASES[PHASES.index(done_before[-1]) + 1]
    assert resumed[0]["data"] == {"phase": next_phase, "state": "started", "round": 0}, resumed[0]
    assert not {e["data"]["phase"] for e in resumed} & set(done_before), "a finished phase ran again"
    assert [e for e in events if e["type"] == "run.completed"], "one terminal event"

    calls = llm_calls(fake, run_id)
    assert calls.count("AnalyzeTask") == 1 and calls.count("DraftPlan") == 1, calls
    for phase in done_before:
        for action in PHASE_ACTIONS[phase]:
            assert calls.count(action) == 1, f"{action} of the finished {phase} phase was called again: {calls}"
    # The phase in flight at the kill is redone once; every action happened at least once.
    assert set(calls) == {"AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"}, calls
    assert all(calls.count(action) <= 2 for action in set(calls)), calls

    # No two LLM requests of the run overlapped in time: never two workers on it at once.
    run_spans = spans.for_run(run_id)
    assert len(run_spans) == len(calls)
    for earlier, later in zip(run_spans, run_spans[1:], strict=False):
        assert earlier.finished <= later.started, f"{earlier.action} overlapped {later.action}"

    assert recovered_in < LEASE_SECONDS + 8, f"recovery took {recovered_in:.1f}s"


def test_graceful_shutdown_releases_run_and_next_process_resumes_it(
    postgres_url: str, fake_llm: tuple[FakeLLMServer, RequestSpans], api_servers: ServerFactory
) -> None:
    fake, _ = fake_llm
    fake.latency_seconds = LLM_LATENCY_SECONDS
    # A long lease: only an explicit release at shutdown lets the next process resume quickly.
    env = service_env(
        postgres_url,
        fake.base_url,
        RUNNER_LEASE_SECONDS=30,
        RUNNER_HEARTBEAT_SECONDS=0.5,
        RUNNER_SHUTDOWN_GRACE_SECONDS=5,
    )
    first = api_servers(env, name="first")
    with httpx.Client(base_url=first.base_url, timeout=5) as client:
        run_id = create_task_and_run(client, "Graceful fizzbuzz", "fizzbuzz up to n, survives a deploy")["id"]
        wait_for_phase(client, run_id, "coding", "started")
    first.stop()  # SIGTERM while the coding phase is in flight

    after_stop = run_row(postgres_url, run_id)
    assert (after_stop["status"], after_stop["lease_owner"]) == ("queued", None), (
        f"the run was not released at shutdown: {after_stop}"
    )
    assert after_stop["attempt"] == 0, "a release is not a crash: no attempt is used up"

    second = api_servers(env, name="second")
    with httpx.Client(base_url=second.base_url, timeout=5) as client:
        final = wait_for_terminal(client, run_id, timeout=15)
        events = run_events(client, run_id)
    assert final["status"] == "completed", (final["status"], final["error"])
    assert final["attempt"] == 0
    released = [e for e in events if e["type"] == "run.status" and e["data"]["status"] == "queued"]
    assert [e["data"].get("reason") for e in released] == ["released at shutdown"]
    workers = assert_one_holder_at_a_time(events)
    assert f":{first.pid}:" in workers[0] and f":{second.pid}:" in workers[1], workers
    calls = llm_calls(fake, run_id)
    # The coding phase in flight at SIGTERM finished within the grace period and was kept.
    assert calls == ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"], calls
