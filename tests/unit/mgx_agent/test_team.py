"""MGXStyleTeam over the fake LLM server (HTTP, OpenAI protocol): planning, approval,
revisions and the distinct ways a run stops."""

from __future__ import annotations


import pytest

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.errors import MalformedOutputError
from mgx_agent.events import TeamEvent
from mgx_agent.llm import OpenAICompatibleClient, TokenUsage
from mgx_agent.team import MGXStyleTeam, PlanNotReadyError, build_team_session
from mgx_agent.testing.fake_llm import FakeLLMServer, FakeReply, FakeRequest, demo_responder

TASK = "Write fizzbuzz(n) returning the FizzBuzz sequence"

BUGGY_FIZZBUZZ = """```python
# file: fizzbuzz.py
def fizzbuzz(n):
    return [str(i) for i in range(1, n + 1)]
```"""


def make_team(
    client: OpenAICompatibleClient,
    events: list[TeamEvent] | None = None,
    sandbox: str = "off",
    **config: object,
) -> MGXStyleTeam:
    async def collect(event: TeamEvent) -> None:
        if events is not None:
            events.append(event)

    team_config = TeamConfig(sandbox=SandboxConfig(mode=sandbox, timeout_seconds=10), **config)
    session = build_team_session(
        team_config, client, default_model="gpt-4o-mini", run_label="run-test"
    )
    return MGXStyleTeam(team_config, session, on_event=collect)


async def test_full_run_with_approval_is_approved(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    events: list[TeamEvent] = []
    team = make_team(client, events)

    plan = await team.analyze_and_plan(TASK)
    team.approve_plan()
    result = await team.execute()

    assert plan.complexity == "XS"
    assert result.outcome == "approved"
    assert [f.path for f in result.files] == ["fizzbuzz.py"]
    assert [f.path for f in result.tests] == ["test_fizzbuzz.py"]
    assert result.rounds == 1
    assert result.usage["total"]["llm_calls"] == 5
    assert set(result.usage["roles"]) == {"mike", "alex", "bob", "charlie"}
    assert [(r.role, r.action) for r in fake_llm.requests] == [
        ("mike", "AnalyzeTask"),
        ("mike", "DraftPlan"),
        ("alex", "WriteCode"),
        ("bob", "WriteTest"),
        ("charlie", "ReviewCode"),
    ]
    assert {r.run_label for r in fake_llm.requests} == {"run-test"}
    types = [e.type for e in events]
    assert types.count("run.plan_ready") == 1
    finished = [e.to_dict()["phase"] for e in events if e.type == "run.phase_finished"]
    assert finished == ["planning", "coding", "testing", "verifying", "reviewing"]
    artifacts = {e.to_dict()["name"] for e in events if e.type == "artifact.created"}
    assert artifacts == {
        "plan.json", "fizzbuzz.py", "test_fizzbuzz.py", "sandbox-report.json", "review.md"
    }
    assert set(result.timings) == {"planning", "coding", "testing", "verifying", "reviewing"}


async def test_execute_refuses_an_unapproved_plan(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    team = make_team(client)
    with pytest.raises(PlanNotReadyError):
        await team.execute()
    await team.analyze_and_plan(TASK)
    with pytest.raises(PlanNotReadyError, match="not approved"):
        await team.execute()


async def test_auto_approve_plan_skips_approval(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    team = make_team(client, auto_approve_plan=True)
    await team.analyze_and_plan(TASK)
    assert team.plan_approved
    assert (await team.execute()).outcome == "approved"


async def test_reject_with_feedback_replans(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    team = make_team(client)
    first = await team.analyze_and_plan(TASK)

    second = await team.reject_plan("Also reject negative n with ValueError")

    assert not team.plan_approved
    replans = fake_llm.requests_for(role="mike", action="DraftPlan")
    assert len(replans) == 2
    assert "Also reject negative n with ValueError" not in replans[0].prompt_text
    assert "Also reject negative n with ValueError" in replans[1].prompt_text
    assert first.summary in replans[1].prompt_text  # the previous plan is shown to Mike
    assert "Revised after feedback" in second.summary
    team.approve_plan()
    assert (await team.execute()).outcome == "approved"


async def test_changes_required_triggers_revision_with_notes_and_failing_output(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue(BUGGY_FIZZBUZZ, role="alex", action="WriteCode")
    team = make_team(client, sandbox="unsafe-subprocess")
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "approved"
    assert result.rounds == 2
    code_requests = fake_llm.requests_for(role="alex", action="WriteCode")
    assert len(code_requests) == 2
    revision_prompt = code_requests[1].prompt_text
    review = fake_llm.requests_for(role="charlie")[0]
    assert "status=failed" in review.prompt_text
    assert "## Review notes" in revision_prompt
    assert "- Fix test_fizzbuzz.py::test_first_fifteen" in revision_prompt
    assert "FAILED test_fizzbuzz.py::test_first_fifteen" in revision_prompt  # failing test output
    assert "return [str(i) for i in range(1, n + 1)]" in revision_prompt  # the code to revise
    assert result.sandbox_report is not None and result.sandbox_report["status"] == "passed"


def always_changes_required(request: FakeRequest) -> str | None:
    if request.action == "ReviewCode":
        # A different note every round, so the loop guard does not fire.
        return f"VERDICT: CHANGES_REQUIRED\n- Rename the function (request {request.received_at})"
    if request.action == "WriteCode":
        # Changing code every round, so "unchanged revision" does not fire either.
        code = demo_responder(request)
        closing = code.rindex("```")
        return f"{code[:closing]}# revision {request.received_at}\n{code[closing:]}"
    return None


async def test_revision_limit_stops_with_its_own_outcome(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.set_responder(always_changes_required)
    team = make_team(client, max_revision_rounds=1)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "revision_limit"
    assert result.rounds == 2
    assert len(fake_llm.requests_for(action="ReviewCode")) == 2
    assert len(fake_llm.requests_for(action="WriteCode")) == 2
    assert result.review is not None and result.review.verdict == "CHANGES_REQUIRED"


async def test_repeated_identical_review_stalls(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    def same_review(request: FakeRequest) -> str | None:
        if request.action == "ReviewCode":
            return "VERDICT: CHANGES_REQUIRED\n- Handle n larger than 10**6 lazily"
        return always_changes_required(request)

    fake_llm.set_responder(same_review)
    team = make_team(client, max_revision_rounds=2, max_rounds=5)
    await team.analyze_and_plan("Build a report generator with charts of sales per region")
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "stalled"
    assert "repeated" in (result.stop_reason or "")
    assert len(fake_llm.requests_for(action="ReviewCode")) == 2


async def test_budget_exhaustion_stops_with_budget_outcome_and_keeps_artifacts(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    def expensive_code(request: FakeRequest) -> FakeReply | None:
        if request.action == "WriteCode":
            # gpt-4o-mini at $0.15 per 1M prompt tokens: this one call costs $0.015.
            return FakeReply(content=demo_responder(request), usage=TokenUsage(100_000, 0))
        return None

    fake_llm.set_responder(expensive_code)
    team = make_team(client, budget_usd=0.01)
    await team.analyze_and_plan(TASK)
    team.approve_plan()

    result = await team.execute()

    assert result.outcome == "budget_exceeded"
    assert "budget" in (result.stop_reason or "")
    assert [f.path for f in result.files] == ["fizzbuzz.py"]
    assert result.tests == []
    assert fake_llm.requests[-1].action == "WriteCode"  # no call after the budget ran out
    assert result.usage["total"]["cost_usd"] == pytest.approx(0.015, rel=0.05)


async def test_malformed_output_is_reasked_once_then_accepted(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue("Sure! Here is a great plan: do it well.", role="mike", action="DraftPlan")
    team = make_team(client)

    plan = await team.analyze_and_plan(TASK)

    plan_requests = fake_llm.requests_for(action="DraftPlan")
    assert len(plan_requests) == 2
    correction = plan_requests[1].messages[-1]["content"]
    assert correction.startswith(
        "Your previous reply could not be used: the reply contains no JSON object"
    )
    assert plan_requests[1].messages[-2] == {
        "role": "assistant",
        "content": "Sure! Here is a great plan: do it well.",
    }
    assert plan.steps


async def test_malformed_output_twice_fails_naming_the_role(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue("def fizzbuzz(n): pass", role="alex")
    fake_llm.enqueue("```python\ndef fizzbuzz(n): pass\n```", role="alex")
    team = make_team(client, auto_approve_plan=True)
    await team.analyze_and_plan(TASK)

    with pytest.raises(MalformedOutputError) as caught:
        await team.execute()

    assert caught.value.role == "alex"
    assert "WriteCode" in caught.value.problem
    assert "no file path" in caught.value.problem
    assert len(fake_llm.requests_for(role="alex")) == 2
    assert "no fenced code block" in fake_llm.requests_for(role="alex")[1].messages[-1]["content"]


async def test_review_without_verdict_is_malformed(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    fake_llm.enqueue("Looks fine to me.", role="charlie")
    fake_llm.enqueue("VERDICT: CHANGES_REQUIRED", role="charlie")
    team = make_team(client, auto_approve_plan=True)
    await team.analyze_and_plan(TASK)

    with pytest.raises(MalformedOutputError, match="charlie: .*at least one concrete note"):
        await team.execute()


async def test_multi_llm_sends_each_role_its_model(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    models = {"mike": "gpt-4.1", "charlie": "o3-mini"}
    team = make_team(client, auto_approve_plan=True, use_multi_llm=True, models=models)
    await team.analyze_and_plan(TASK)
    await team.execute()

    sent = {(r.role, r.model) for r in fake_llm.requests}
    assert sent == {
        ("mike", "gpt-4.1"), ("alex", "gpt-4o-mini"), ("bob", "gpt-4o-mini"), ("charlie", "o3-mini")
    }


async def test_streaming_deltas_are_emitted_as_agent_delta_events(
    fake_llm: FakeLLMServer, client: OpenAICompatibleClient
) -> None:
    events: list[TeamEvent] = []
    team = make_team(client, events, stream_deltas=True)
    plan = await team.analyze_and_plan(TASK)

    deltas = "".join(e.to_dict()["text"] for e in events if e.type == "agent.delta")
    assert all(r.stream for r in fake_llm.requests)
    assert plan.summary in deltas


async def test_human_reviewer_overrules_charlie_and_the_revision_gets_the_notes(
    client: OpenAICompatibleClient, fake_llm: FakeLLMServer
) -> None:
    from mgx_agent.parsing import Review

    decisions: list[str] = []

    async def human(charlie: Review, context: dict) -> Review:
        assert context["files"], "the human sees the code"
        if not decisions:
            decisions.append("changes")
            return Review("CHANGES_REQUIRED", ("Name the function fizz_buzz_sequence",), "VERDICT: CHANGES_REQUIRED")
        decisions.append("agree")
        return charlie

    config = TeamConfig(
        sandbox=SandboxConfig(mode="off"), human_reviewer=True, auto_approve_plan=True, max_revision_rounds=2
    )
    session = build_team_session(config, client, default_model="gpt-4o-mini", run_label="run-human")
    events: list[TeamEvent] = []

    async def collect(event: TeamEvent) -> None:
        events.append(event)

    team = MGXStyleTeam(config, session, on_event=collect, human_review=human)
    fake_llm.enqueue(BUGGY_FIZZBUZZ, action="WriteCode")
    fake_llm.enqueue(BUGGY_FIZZBUZZ.replace("def fizzbuzz(n)", "def fizz_buzz_sequence(n)"), action="WriteCode")
    await team.analyze_and_plan(TASK)
    result = await team.execute()

    assert result.approved and decisions == ["changes", "agree"]
    revision = [r for r in fake_llm.requests if r.action == "WriteCode"][1]
    assert "Name the function fizz_buzz_sequence" in revision.prompt_text
    human_messages = [e for e in events if getattr(e, "role", None) == "human"]
    assert len(human_messages) == 2


def test_human_reviewer_without_a_way_to_ask_is_refused(client: OpenAICompatibleClient) -> None:
    config = TeamConfig(sandbox=SandboxConfig(mode="off"), human_reviewer=True)
    session = build_team_session(config, client, default_model="gpt-4o-mini")
    with pytest.raises(ValueError, match="human_review callback"):
        MGXStyleTeam(config, session)
