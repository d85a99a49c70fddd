"""The metagpt engine's adapter through the real service, against a stand-in worker that speaks
the same line protocol (metagpt_stand_in_worker.py, run with this interpreter) and the
protocol-level fake LLM server. The real MetaGPT worker is tested in
test_metagpt_engine_real.py, which needs MetaGPT's own environment (the CI step installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from mgx_agent.llm import TokenUsage
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest, demo_responder
from tests.integration.backend.conftest import fake_llm_config, start_run, wait_for_status
from tests.integration.backend.engine_support import (
    assert_tests_ran_in_the_service_sandbox,
    assert_usage_is_what_the_provider_returned,
)

STAND_IN = Path(__file__).with_name("metagpt_stand_in_worker.py")
FULL_SEQUENCE = ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"]
REPLANNED_SEQUENCE = [
    "AnalyzeTask",
    "DraftPlan",
    "DraftPlan",
    "WriteCode",
    "WriteTest",
    "ReviewCode",
]
METAGPT = {"engine": "metagpt"}

# One database is enough here: the engine is what is under test, not the repositories.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def stand_in_python(tmp_path: Path) -> tuple[str, Path]:
    """An 'interpreter' for MGX_METAGPT_PYTHON that runs the stand-in worker and records the pid
    of every worker it starts (exec keeps the pid)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    shim = tmp_path / "python"
    shim.write_text(
        f'#!/bin/sh\necho $$ > "{pids}/$$"\nexec "{sys.executable}" "{STAND_IN}" "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return str(shim), pids


def actions_for(fake_llm: FakeLLMServer, run_id: str) -> list[str]:
    return [request.action for request in fake_llm.requests if request.run_label == run_id]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@SQLITE_ONLY
async def test_metagpt_run_replans_on_feedback_then_completes_with_tests_in_our_sandbox(
    run_app, fake_llm: FakeLLMServer, stand_in_python: tuple[str, Path]
) -> None:
    replies: list[tuple[str, TokenUsage]] = []

    def respond(request: FakeRequest) -> FakeReply:
        usage = TokenUsage(prompt_tokens=100 + len(replies), completion_tokens=10 + len(replies))
        replies.append((str(request.model), usage))
        return FakeReply(content=demo_responder(request), usage=usage)

    fake_llm.set_responder(respond)
    client = await run_app(mgx_metagpt_python=stand_in_python[0], mgx_sandbox="auto")
    # Alex on another model: per-role models reach the engine's calls and are priced as such.
    _, run = await start_run(client, {**METAGPT, "models": {"alex": "gpt-4o"}})

    waiting = await wait_for_status(client, run["id"], "awaiting_approval")
    assert waiting["plan"]["steps"] and waiting["complexity"] in {"XS", "S", "M", "L", "XL"}
    assert waiting["usage"]["total"]["llm_calls"] == 2
    rejected = await client.post(
        f"/runs/{run['id']}/reject", json={"feedback": "also handle negative numbers"}
    )
    assert rejected.status_code == 200, rejected.text
    await wait_for_status(client, run["id"], "awaiting_approval")
    drafts = [r for r in fake_llm.requests if r.run_label == run["id"] and r.action == "DraftPlan"]
    assert len(drafts) == 2 and "also handle negative numbers" in drafts[1].prompt_text
    assert (await client.post(f"/runs/{run['id']}/approve", json={})).status_code == 200

    done = await wait_for_status(client, run["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    assert done["result"]["outcome"] == "approved" and done["result"]["engine"] == "metagpt"
    assert actions_for(fake_llm, run["id"]) == REPLANNED_SEQUENCE
    # Tests ran in the service's sandbox, not in the worker (it has the sandbox switched off).
    assert_tests_ran_in_the_service_sandbox(done)
    models = ["gpt-4o-mini"] * 3 + ["gpt-4o"] + ["gpt-4o-mini"] * 2
    assert_usage_is_what_the_provider_returned(done, replies, models)
    assert set(done["usage"]["roles"]) == {"mike", "alex", "bob", "charlie"}

    events = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 200})).json()["items"]
    types = [event["type"] for event in events]
    assert {
        "run.plan_ready",
        "agent.message",
        "artifact.created",
        "sandbox.result",
        "run.usage",
    } <= set(types)
    messages = [event["data"] for event in events if event["type"] == "agent.message"]
    assert [message["action"] for message in messages] == REPLANNED_SEQUENCE
    assert all(message["llm"]["prompt_tokens"] > 0 for message in messages)
    # The worker's stdout chatter never reached the protocol (the run would have failed).
    assert not any("chatter" in str(event["data"]) for event in events)


@SQLITE_ONLY
async def test_metagpt_cancel_mid_call_stops_the_worker_within_two_seconds(
    run_app, fake_llm: FakeLLMServer, stand_in_python: tuple[str, Path]
) -> None:
    shim, pids = stand_in_python
    fake_llm.enqueue(FakeReply(content="", hang=True), action="WriteCode")
    client = await run_app(mgx_metagpt_python=shim)
    _, run = await start_run(client, {**METAGPT, "auto_approve_plan": True})
    deadline = time.monotonic() + 15
    while "WriteCode" not in actions_for(fake_llm, run["id"]):
        assert time.monotonic() < deadline, "the worker never asked for WriteCode"
        await asyncio.sleep(0.05)
    workers = [int(path.name) for path in pids.iterdir()]
    assert any(alive(pid) for pid in workers)

    cancelled_at = time.monotonic()
    assert (await client.post(f"/runs/{run['id']}/cancel")).status_code in (200, 202)
    while any(alive(pid) for pid in workers):
        assert time.monotonic() - cancelled_at < 2.0, "the worker outlived the cancel by 2 s"
        await asyncio.sleep(0.02)

    done = await wait_for_status(client, run["id"], "cancelled")
    assert done["usage"]["total"]["llm_calls"] == 2
    calls = len(actions_for(fake_llm, run["id"]))
    await asyncio.sleep(0.3)
    assert len(actions_for(fake_llm, run["id"])) == calls


@SQLITE_ONLY
async def test_metagpt_failures_fail_the_run_with_the_real_cause(
    run_app, fake_llm: FakeLLMServer, stand_in_python
) -> None:
    """A worker that dies, a worker that reports an error, and a spent budget (the worker is
    stopped before another call): three runs at once on one service."""
    fake_llm.enqueue("I would rather not write code.", action="WriteCode")
    fake_llm.enqueue("Still no code, sorry.", action="WriteCode")
    client = await run_app(mgx_metagpt_python=stand_in_python[0])

    async def run_of(description: str, config: dict) -> str:
        body = {"title": "fizzbuzz", "description": description, "config": {**METAGPT, **config}}
        task = (await client.post("/tasks/", json=body)).json()
        return (await client.post("/runs/", json={"task_id": task["id"]})).json()["id"]

    crashed = await run_of("CRASH-THE-WORKER", {})
    malformed = await run_of("write fizzbuzz(n)", {"auto_approve_plan": True})
    broke = await run_of("write fizzbuzz(n)", {"auto_approve_plan": True, "budget_usd": 0.000001})
    finished = {"failed", "completed"}

    done = await wait_for_status(client, crashed, finished)
    assert (done["status"], done["error"]["code"]) == ("failed", "engine_crashed")
    assert "exited with status 3" in done["error"]["message"]
    assert "ImportError: MetaGPT could not load its provider" in done["error"]["message"]

    done = await wait_for_status(client, malformed, finished)
    assert (done["status"], done["error"]["code"]) == ("failed", "malformed_output")
    assert done["error"]["message"].startswith("alex: WriteCode output unusable")
    assert done["usage"]["total"]["llm_calls"] == 4

    done = await wait_for_status(client, broke, finished)
    assert (done["status"], done["error"]["code"]) == ("failed", "budget_exceeded")
    assert actions_for(fake_llm, broke) == ["AnalyzeTask"]
    assert done["usage"]["total"]["llm_calls"] == 1


@SQLITE_ONLY
async def test_health_status_lists_the_engines_and_why_metagpt_is_missing(
    run_app, stand_in_python
) -> None:
    async def engines(client) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while True:
            found = (await client.get("/health/status")).json()["engines"]
            if found["metagpt"]["available"] is not None:
                return found
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.05)

    installed = await engines(await run_app(mgx_metagpt_python=stand_in_python[0]))
    assert installed["default"] == "native" and installed["native"]["available"] is True
    assert (
        installed["metagpt"]["available"] is True and installed["metagpt"]["version"] == "stand-in"
    )

    missing_client = await run_app(mgx_metagpt_python=None)
    missing = await engines(missing_client)
    assert missing["metagpt"] == {"available": False, "reason": missing["metagpt"]["reason"]}
    assert "MGX_METAGPT_PYTHON is not set" in missing["metagpt"]["reason"]

    _, run = await start_run(missing_client, METAGPT)
    done = await wait_for_status(missing_client, run["id"], {"failed", "completed"})
    assert done["error"]["code"] == "engine_unavailable"
    assert "MGX_METAGPT_PYTHON is not set" in done["error"]["message"]

    unknown = await missing_client.post(
        "/tasks/", json={"title": "t", "config": {"engine": "crewai"}}
    )
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert "engine" in unknown.text


class _StopAfterCoding(Exception):
    pass


async def test_metagpt_engine_resumes_from_its_checkpoint_without_redoing_finished_phases(
    fake_llm: FakeLLMServer, stand_in_python: tuple[str, Path]
) -> None:
    """The executor's view without the service: a run stopped after coding (as a restart
    would stop it) continues from the checkpoint with a new worker and never codes again."""
    from mgx_agent.config import SandboxConfig, TeamConfig
    from mgx_agent.engines.out_of_process import OutOfProcessEngine, metagpt_command
    from mgx_agent.events import PhaseFinished, TeamEvent

    shim, pids = stand_in_python
    config = TeamConfig(engine="metagpt", enable_caching=False, sandbox=SandboxConfig(mode="off"))
    llm = fake_llm_config(fake_llm)

    async def stop_after_coding(event: TeamEvent) -> None:
        if isinstance(event, PhaseFinished) and event.phase == "coding":
            raise _StopAfterCoding

    first = OutOfProcessEngine(
        metagpt_command(shim), config, llm, run_label="resumed", on_event=stop_after_coding
    )
    await first.analyze_and_plan("write fizzbuzz(n)")
    first.approve_plan()
    with pytest.raises(_StopAfterCoding):
        await first.execute()
    await first.aclose()
    assert not any(alive(int(path.name)) for path in pids.iterdir())
    checkpoint = first.state
    assert checkpoint["next_phase"] == "testing" and checkpoint["usage"]["total"]["llm_calls"] == 3

    second = OutOfProcessEngine(
        metagpt_command(shim), config, llm, run_label="resumed", checkpoint=checkpoint
    )
    result = await second.execute()
    assert result.outcome == "approved"
    assert actions_for(fake_llm, "resumed") == FULL_SEQUENCE
    assert result.usage["total"]["llm_calls"] == 5


async def test_metagpt_worker_gets_none_of_the_service_environment_and_its_root_is_removed(
    fake_llm: FakeLLMServer, stand_in_python: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mgx_agent.config import SandboxConfig, TeamConfig
    from mgx_agent.engines.out_of_process import OutOfProcessEngine, metagpt_command
    from mgx_agent.events import RunLog, TeamEvent

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:hunter2@db/mgx")
    monkeypatch.setenv("MGX_LLM_API_KEY", "sk-service-secret")
    logged: list[dict] = []

    async def keep_logs(event: TeamEvent) -> None:
        if isinstance(event, RunLog) and event.message.startswith("{"):
            logged.append(json.loads(event.message))

    config = TeamConfig(engine="metagpt", enable_caching=False, sandbox=SandboxConfig(mode="off"))
    engine = OutOfProcessEngine(
        metagpt_command(stand_in_python[0]), config, fake_llm_config(fake_llm), on_event=keep_logs
    )
    await engine.analyze_and_plan("REPORT-THE-ENVIRONMENT and write fizzbuzz(n)")

    [seen] = logged
    shell = {"PWD", "SHLVL", "_", "OLDPWD"}  # what /bin/sh (the test's shim) adds itself
    assert set(seen["env"]) - shell <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "METAGPT_PROJECT_ROOT",
        "HOME",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
    }
    assert seen["cwd"] == seen["root"] and Path(seen["root"]).name.startswith("mgx-metagpt-")
    assert not Path(seen["root"]).exists()
