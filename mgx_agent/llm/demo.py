"""The offline demo model: deterministic replies in exactly the formats the actions parse.

``demo_reply`` is a pure function of the call's context and messages; it reads the
``## <Section>`` headings of the team's prompts (``mgx_agent/prompts.py``). ``DemoLLMClient``
serves it through the ``LLMClient`` protocol so the service runs with no provider configured,
and the fake LLM server uses it as its default responder.
"""

from __future__ import annotations

import asyncio
import json
import re

from mgx_agent.llm.base import CallContext, ChatMessage, DeltaCallback, LLMResponse, TokenUsage
from mgx_agent.llm.demo_catalogue import DemoSolution, solution_for

DEMO_MODEL = "mgx-demo"
DEMO_LABEL = "offline demo model"


def _section(text: str, title: str) -> str | None:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else None


def _first_user_prompt(messages: list[ChatMessage]) -> str:
    return next((m["content"] for m in messages if m.get("role") == "user"), "")


def _task(messages: list[ChatMessage]) -> str:
    return _section(_first_user_prompt(messages), "Task") or _first_user_prompt(messages)


def _analyze(solution: DemoSolution) -> str:
    return (
        f"COMPLEXITY: {solution.complexity}\n"
        f"Rationale ({DEMO_LABEL}): {solution.summary.lower()} fits in one small module with a "
        "handful of tests."
    )


def _plan(solution: DemoSolution, prompt: str) -> str:
    complexity = _section(prompt, "Assessed complexity") or solution.complexity
    feedback = _section(prompt, "Reviewer feedback on the previous plan")
    summary = f"{solution.summary} ({DEMO_LABEL})"
    if feedback:
        summary += f". Revised after feedback: {feedback.splitlines()[0][:200]}"
    plan = {
        "summary": summary,
        "complexity": complexity.split()[0].upper(),
        "steps": [
            {"title": f"Implement {solution.module}.py", "assignee": "alex",
             "detail": "Standard library only, with docstrings and type hints."},
            {"title": f"Write pytest tests for {solution.module}.py", "assignee": "bob",
             "detail": "Cover normal input and edge cases."},
            {"title": "Review code and test results", "assignee": "charlie",
             "detail": "Approve only when the tests pass."},
        ],
        "acceptance_criteria": [
            f"{solution.module}.py implements: {solution.summary}",
            "All pytest tests pass in the sandbox",
        ],
    }  # fmt: skip
    if feedback:
        plan["acceptance_criteria"].append(f"Addresses feedback: {feedback.splitlines()[0][:200]}")
    return "```json\n" + json.dumps(plan, indent=2) + "\n```"


def _code(solution: DemoSolution) -> str:
    return f"```python\n# file: {solution.module}.py\n{solution.code.rstrip()}\n```"


def _tests(solution: DemoSolution, prompt: str) -> str:
    count_text = _section(prompt, "Test count") or ""
    count = int(count_text.split()[0]) if count_text[:1].isdigit() else 3
    body = solution.test_module(count)
    return f"```python\n# file: test_{solution.module}.py\n{body.rstrip()}\n```"


def _review(solution: DemoSolution, prompt: str) -> str:
    run = _section(prompt, "Test run") or ""
    status = re.search(r"status=(\w+)", run)
    state = status.group(1) if status else "unknown"
    if state == "passed":
        passed = re.search(r"passed=(\d+)", run)
        count = f"{passed.group(1)} " if passed else ""
        notes = [f"All {count}tests passed in the sandbox."]
    elif state in ("skipped", "unavailable"):
        why = "sandbox off" if state == "skipped" else "no sandbox isolation available"
        notes = [f"Tests were not run ({why}); approving on reading the code alone."]
    else:
        output = _section(prompt, "Test output") or ""
        failures = re.findall(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$", output, re.MULTILINE)
        notes = [
            f"Fix {test}: {reason.strip() or 'it fails'}" for test, reason in failures[:5]
        ] or [f"The test run ended with status {state}; make the tests pass."]
        if state == "timed_out":
            notes.append("The run hit the sandbox timeout: remove unbounded loops or waits.")
        return "VERDICT: CHANGES_REQUIRED\nFIX: code\n" + "\n".join(f"- {note}" for note in notes)
    notes.append(f"Reviewed by the {DEMO_LABEL}; no human-level review was done.")
    if solution.generic:
        notes.append("The demo model does not implement arbitrary tasks: the code is a stand-in.")
    return "VERDICT: APPROVED\n" + "\n".join(f"- {note}" for note in notes)


def demo_reply(context: CallContext, messages: list[ChatMessage]) -> str:
    """The demo model's reply to one call, chosen by the action in ``context``."""
    solution = solution_for(_task(messages))
    prompt = _first_user_prompt(messages)
    if context.action == "AnalyzeTask":
        return _analyze(solution)
    if context.action == "DraftPlan":
        return _plan(solution, prompt)
    if context.action == "WriteCode":
        return _code(solution)
    if context.action == "WriteTest":
        return _tests(solution, prompt)
    if context.action == "ReviewCode":
        return _review(solution, prompt)
    return f"The {DEMO_LABEL} has no answer for action {context.action!r}."


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class DemoLLMClient:
    """``LLMClient`` over ``demo_reply``: no network, zero cost, labelled ``demo``."""

    provider = "demo"
    model = DEMO_MODEL

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        context: CallContext,
        on_delta: DeltaCallback | None = None,
    ) -> LLMResponse:
        text = demo_reply(context, messages)
        if on_delta is not None:
            for line in text.splitlines(keepends=True):
                await on_delta(line)
        # Yield once so a demo run stays cancellable and fair to other runs in the loop.
        await asyncio.sleep(0)
        usage = TokenUsage(
            prompt_tokens=sum(_estimate_tokens(m.get("content", "")) for m in messages),
            completion_tokens=_estimate_tokens(text),
            estimated=True,
        )
        return LLMResponse(content=text, model=DEMO_MODEL, provider="demo", usage=usage)

    async def aclose(self) -> None:
        return None
