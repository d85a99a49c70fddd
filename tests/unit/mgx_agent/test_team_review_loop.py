"""The review loop: revisions go to whoever owns what must change, and a run is approved only
over tests that ran and passed."""

from __future__ import annotations

import json

import pytest

from mgx_agent.errors import LLMError
from mgx_agent.events import PhaseFinished, RunLog, TeamEvent
from mgx_agent.llm import OpenAICompatibleClient
from mgx_agent.prompts import scrub_test_output
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest
from tests.model_replies import APPROVAL_DESPITE_FAILURE, REVIEW_WRONG_TEST, TASK, WRONG_TESTS
from tests.unit.mgx_agent.team_support import make_team

SANDBOX = "unsafe-subprocess"


async def run_team(client: OpenAICompatibleClient, events: list[TeamEvent] | None = None, **config: object):  # type: ignore[no-untyped-def]
    team = make_team(client, events, **config)
    await team.analyze_and_plan(TASK)
    team.approve_plan()
    return await team.execute()


async def test_wrong_test_is_rewritten_by_bob_in_round_two(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(REVIEW_WRONG_TEST, role="charlie", action="ReviewCode")

    result = await run_team(client, sandbox=SANDBOX)

    assert result.outcome == "approved"
    assert result.rounds == 2
    assert len(fake_llm.requests_for(action="WriteCode")) == 1  # Alex's correct code was kept
    _, second_tests = fake_llm.requests_for(action="WriteTest")
    assert "## Current tests" in second_tests.prompt_text
    assert "test_three_is_a_number expects" in second_tests.prompt_text
    assert "FAILED test_fizzbuzz.py::test_three_is_a_number" in second_tests.prompt_text
    assert "test_three_is_a_number" not in result.tests[0].content
    assert result.sandbox_report is not None and result.sandbox_report["status"] == "passed"
    assert result.verification == {"tests": "passed", "required": True, "detail": result.verification["detail"]}


async def test_approval_over_a_failing_test_is_treated_as_changes_required(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(APPROVAL_DESPITE_FAILURE, role="charlie", action="ReviewCode")
    events: list[TeamEvent] = []

    result = await run_team(client, events, sandbox=SANDBOX)

    assert result.outcome == "approved" and result.rounds == 2
    # Both got the failures: Alex kept his correct code unchanged, then Bob fixed the test.
    code_requests = fake_llm.requests_for(action="WriteCode")
    assert len(code_requests) == 2 and len(fake_llm.requests_for(action="WriteTest")) == 2
    revision = code_requests[1].prompt_text
    assert "Failing test test_fizzbuzz.py::test_three_is_a_number" in revision
    assert "never bend correct code to fit a test" in revision
    assert "make the failing tests pass" not in revision
    logs = [e.message for e in events if isinstance(e, RunLog)]
    assert any("treated as CHANGES_REQUIRED" in line for line in logs)
    assert "alex returned the code unchanged" in logs


async def test_approval_over_a_failing_test_never_completes_at_the_revision_limit(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(APPROVAL_DESPITE_FAILURE, role="charlie", action="ReviewCode")

    result = await run_team(client, sandbox=SANDBOX, max_revision_rounds=0)

    assert result.outcome == "revision_limit"
    assert result.review is not None and result.review.verdict == "CHANGES_REQUIRED"
    assert result.verification["tests"] == "failing"


async def test_task_may_allow_an_approval_over_failing_tests(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(APPROVAL_DESPITE_FAILURE, role="charlie", action="ReviewCode")

    result = await run_team(client, sandbox=SANDBOX, require_passing_tests=False)

    assert result.outcome == "approved" and result.rounds == 1
    assert result.verification == {"tests": "failing", "required": False, "detail": "1 passed, 1 failed, 0 errors"}
    assert "require_passing_tests=false" in (result.stop_reason or "")


async def test_approval_with_the_sandbox_off_says_the_tests_were_not_run(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    result = await run_team(client, sandbox="off")

    assert result.outcome == "approved"
    assert result.verification["tests"] == "not_run"
    assert result.stop_reason == "approved without running the tests: the sandbox is off (MGX_SANDBOX=off)"


def code_unchanged_review_says_fix_code(request: FakeRequest) -> str | None:
    if request.action == "ReviewCode":
        # A different note each time, so only "nobody changed anything" can stop the run.
        return f"VERDICT: CHANGES_REQUIRED\nFIX: code\n- Handle huge n lazily ({request.received_at})"
    return None


async def test_unchanged_code_hands_the_review_to_bob_and_stalls_only_when_both_changed_nothing(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    # The demo model answers Alex and Bob with the same files every time.
    fake_llm.set_responder(code_unchanged_review_says_fix_code)

    result = await run_team(client, sandbox="off", max_revision_rounds=2)

    assert result.outcome == "stalled"
    assert result.stop_reason == "revision 1: neither the code nor the tests changed after the review"
    assert [r.action for r in fake_llm.requests][-2:] == ["WriteCode", "WriteTest"]
    assert len(fake_llm.requests_for(action="ReviewCode")) == 1


def test_test_output_for_the_model_carries_no_host_paths_or_plugins() -> None:
    output = (
        "platform linux -- Python 3.11.7, pytest-8.3.3, pluggy-1.5.0\n"
        "rootdir: /tmp/mgx-sandbox-k2j4/work\nplugins: anyio-4.6.0, asyncio-0.24.0, cov-5.0.0\n"
        "collected 2 items\n\n"
        "/tmp/mgx-sandbox-k2j4/work/test_fizzbuzz.py:9: AssertionError\n"
        "=============================== warnings summary ===============================\n"
        "../../usr/lib/python3/site-packages/pytest_asyncio/plugin.py:208\n"
        "  PytestDeprecationWarning: asyncio_default_fixture_loop_scope is unset.\n\n"
        "-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html\n"
        "=========================== short test summary info ============================\n"
        "FAILED test_fizzbuzz.py::test_three_is_a_number - assert ['1', '2', 'Fizz'] == ['1', '2', '3']\n"
        "==================== 1 failed, 1 passed, 1 warning in 0.03s ====================\n"
    )
    scrubbed = scrub_test_output(output)
    for host_detail in ("/tmp/", "rootdir", "plugins:", "pytest_asyncio", "warning", "0.03s", "platform"):
        assert host_detail not in scrubbed
    assert "test_fizzbuzz.py:9: AssertionError" in scrubbed
    assert "FAILED test_fizzbuzz.py::test_three_is_a_number" in scrubbed


async def test_run_resumed_after_the_review_sends_the_revision_to_bob_again(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(WRONG_TESTS, role="bob", action="WriteTest")
    fake_llm.enqueue(REVIEW_WRONG_TEST, role="charlie", action="ReviewCode")
    # The first worker dies as Bob is asked to revise: its WriteTest call fails outright.
    fake_llm.enqueue(FakeReply(status=400, content="worker lost"), role="bob", action="WriteTest")
    events: list[TeamEvent] = []
    # Routing alone is under test here: no sandbox needed, Charlie's review is scripted.
    first = make_team(client, events)
    await first.analyze_and_plan(TASK)
    first.approve_plan()
    with pytest.raises(LLMError):
        await first.execute()
    checkpoint = json.loads(
        json.dumps([e.checkpoint for e in events if isinstance(e, PhaseFinished) and e.phase == "reviewing"][-1])
    )
    assert checkpoint["next_phase"] == "testing" and checkpoint["revision"]["queue"] == ["bob"]

    resumed = make_team(client)
    resumed.restore(checkpoint)
    calls_before = len(fake_llm.requests)
    result = await resumed.execute()

    assert result.outcome == "approved" and result.rounds == 2
    assert [r.action for r in fake_llm.requests[calls_before:]] == ["WriteTest", "ReviewCode"]
