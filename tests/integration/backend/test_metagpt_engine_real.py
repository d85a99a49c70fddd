"""The metagpt engine with real MetaGPT 0.8.2, through the real service and the protocol-level
fake LLM server. Needs MetaGPT's own environment: ``MGX_METAGPT_PYTHON`` pointing at the
interpreter that ``scripts/install-metagpt.sh`` made. CI's MetaGPT step installs it and runs
this module with ``MGX_REQUIRE_METAGPT=1``, where a missing environment fails instead of
skipping. The default suite covers the adapter with a stand-in worker
(test_metagpt_engine_api.py).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from mgx_agent.llm import TokenUsage
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest, demo_responder
from tests.integration.backend.conftest import start_run, wait_for_status
from tests.integration.backend.engine_support import (
    assert_tests_ran_in_the_service_sandbox,
    assert_usage_is_what_the_provider_returned,
)

METAGPT_PYTHON = os.environ.get("MGX_METAGPT_PYTHON", "")
FULL_SEQUENCE = ["AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode"]
METAGPT = {"engine": "metagpt"}
# Importing MetaGPT's team modules takes seconds per worker (each engine call starts one).
SLOW = 240

if not METAGPT_PYTHON and os.environ.get("MGX_REQUIRE_METAGPT") == "1":
    raise RuntimeError("MGX_REQUIRE_METAGPT=1 but MGX_METAGPT_PYTHON is not set")
pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(
        not METAGPT_PYTHON,
        reason="MetaGPT's environment is not installed (scripts/install-metagpt.sh); CI's MetaGPT step runs these",
    ),
]


@pytest.fixture
def metagpt_python(tmp_path: Path) -> tuple[str, Path]:
    """MetaGPT's interpreter behind a shim that records each worker's pid (exec keeps it)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\necho $$ > "{pids}/$$"\nexec "{METAGPT_PYTHON}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return str(shim), pids


def requests_of(fake_llm: FakeLLMServer, run_id: str) -> list[FakeRequest]:
    return [request for request in fake_llm.requests if request.run_label == run_id]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_metagpt_team_plans_then_codes_tests_in_our_sandbox_reviews_and_completes(
    run_app, fake_llm: FakeLLMServer, metagpt_python
) -> None:
    replies: list[tuple[str, TokenUsage]] = []

    def respond(request: FakeRequest) -> FakeReply:
        usage = TokenUsage(prompt_tokens=200 + len(replies), completion_tokens=20 + len(replies))
        replies.append((str(request.model), usage))
        return FakeReply(content=demo_responder(request), usage=usage)

    fake_llm.set_responder(respond)
    client = await run_app(mgx_metagpt_python=metagpt_python[0], mgx_sandbox="auto")
    # Alex on another model: per-role models reach the engine's calls, and are priced as such.
    _, run = await start_run(client, {**METAGPT, "models": {"alex": "gpt-4o"}})
    waiting = await wait_for_status(
        client, run["id"], {"awaiting_approval", "failed"}, timeout=SLOW
    )
    assert waiting["status"] == "awaiting_approval", waiting["error"]
    assert waiting["plan"]["steps"]
    assert (await client.post(f"/runs/{run['id']}/approve", json={})).status_code == 200

    done = await wait_for_status(client, run["id"], {"completed", "failed"}, timeout=SLOW)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["engine"] == "metagpt"
    requests = requests_of(fake_llm, run["id"])
    assert [request.action for request in requests] == FULL_SEQUENCE
    # MetaGPT's own OpenAI provider made the calls (openai 1.39 in MetaGPT's venv).
    assert all(
        request.headers.get("user-agent", "").startswith("AsyncOpenAI/Python")
        for request in requests
    )
    assert_tests_ran_in_the_service_sandbox(done)
    models = ["gpt-4o-mini"] * 2 + ["gpt-4o"] + ["gpt-4o-mini"] * 2
    assert_usage_is_what_the_provider_returned(done, replies, models)

    status = (await client.get("/health/status")).json()["engines"]["metagpt"]
    assert status["available"] is True and status["version"] == "0.8.2"


async def test_metagpt_reject_with_feedback_replans(
    run_app, fake_llm: FakeLLMServer, metagpt_python
) -> None:
    client = await run_app(mgx_metagpt_python=metagpt_python[0])
    _, run = await start_run(client, METAGPT)
    await wait_for_status(client, run["id"], "awaiting_approval", timeout=SLOW)
    rejected = await client.post(
        f"/runs/{run['id']}/reject", json={"feedback": "also handle negative numbers"}
    )
    assert rejected.status_code == 200, rejected.text

    again = await wait_for_status(client, run["id"], {"awaiting_approval", "failed"}, timeout=SLOW)
    assert again["status"] == "awaiting_approval", again["error"]
    drafts = [
        request for request in requests_of(fake_llm, run["id"]) if request.action == "DraftPlan"
    ]
    assert len(drafts) == 2 and "also handle negative numbers" in drafts[1].prompt_text
    assert [request.action for request in requests_of(fake_llm, run["id"])].count(
        "AnalyzeTask"
    ) == 1


async def test_metagpt_cancel_mid_call_stops_the_worker_within_two_seconds(
    run_app, fake_llm: FakeLLMServer, metagpt_python
) -> None:
    shim, pids = metagpt_python
    fake_llm.enqueue(FakeReply(content="", hang=True), action="WriteCode")
    client = await run_app(mgx_metagpt_python=shim)
    _, run = await start_run(client, {**METAGPT, "auto_approve_plan": True})
    deadline = time.monotonic() + SLOW
    while "WriteCode" not in [request.action for request in requests_of(fake_llm, run["id"])]:
        assert time.monotonic() < deadline, "MetaGPT never asked for WriteCode"
        await asyncio.sleep(0.1)
    workers = [int(path.name) for path in pids.iterdir()]

    cancelled_at = time.monotonic()
    assert (await client.post(f"/runs/{run['id']}/cancel")).status_code in (200, 202)
    while any(alive(pid) for pid in workers):
        assert time.monotonic() - cancelled_at < 2.0, (
            "the MetaGPT worker outlived the cancel by 2 s"
        )
        await asyncio.sleep(0.02)
    done = await wait_for_status(client, run["id"], "cancelled")
    assert done["usage"]["total"]["llm_calls"] == 2


async def test_exception_swallowed_by_metagpt_team_run_fails_the_run_with_the_real_cause(
    run_app, fake_llm: FakeLLMServer, metagpt_python
) -> None:
    # MetaGPT's Role.run rewraps this 401 and Team.run swallows it; the run still says so.
    fake_llm.enqueue(
        FakeReply(status=401, body='{"error": {"message": "key revoked by the fake"}}'),
        action="WriteCode",
    )
    client = await run_app(mgx_metagpt_python=metagpt_python[0])
    _, run = await start_run(client, {**METAGPT, "auto_approve_plan": True})
    done = await wait_for_status(client, run["id"], {"completed", "failed"}, timeout=SLOW)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "llm_auth"
    assert (
        "401" in done["error"]["message"] and "key revoked by the fake" in done["error"]["message"]
    )
    assert done["usage"]["total"]["llm_calls"] == 2
