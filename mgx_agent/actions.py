"""The five actions of the team and the one way they talk to the model.

Each action builds its prompt (``prompts.py``), calls the run's ``LLMSession`` as its role, and
parses the reply strictly (``parsing.py``). A reply that does not parse gets exactly one
corrective re-ask that quotes the problem; a second failure raises ``MalformedOutputError``.
A reply cut off at the token limit is asked for once more, shorter; a second cut-off raises
``LLMTruncatedError``. Only a first answer that parsed is offered to the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from mgx_agent import prompts
from mgx_agent.errors import LLMTruncatedError, MalformedOutputError
from mgx_agent.events import AgentDelta, AgentMessage, RunLog, TeamEvent, UsageUpdated
from mgx_agent.llm.base import ChatMessage, LLMResponse
from mgx_agent.parsing import (
    OutputFormatError,
    Plan,
    Review,
    SourceFile,
    parse_code_files,
    parse_complexity,
    parse_plan,
    parse_review,
    parse_test_files,
)
from mgx_agent.roles import ALEX, BOB, CHARLIE, MIKE, Role

if TYPE_CHECKING:
    from mgx_agent.llm.session import LLMSession

T = TypeVar("T")

Emit = Callable[[TeamEvent], Awaitable[None]]


@dataclass(frozen=True)
class ActionContext:
    """What every action needs from the run: the session and where progress goes."""

    session: LLMSession
    emit: Emit
    stream_deltas: bool = False

    async def ask(
        self,
        role: Role,
        action: str,
        prompt: str,
        parse: Callable[[str], T],
        format_instructions: str,
    ) -> T:
        messages: list[ChatMessage] = [
            {"role": "system", "content": role.system_prompt},
            {"role": "user", "content": prompt},
        ]
        response, messages, shortened = await self._reply(role, action, messages)
        try:
            value = parse(_answer(response))
        except OutputFormatError as first:
            await self.session.discard(response)
            await self._log(role, f"{action} reply refused ({first}); asking once more")
            correction = prompts.correction_prompt(str(first), format_instructions)
            messages = [
                *messages,
                {"role": "assistant", "content": response.content},
                {"role": "user", "content": correction},
            ]
        else:
            if not shortened:
                await self.session.accept(response)
            return value
        response = await self._chat(role, action, messages)
        try:
            return parse(_answer(response))
        except OutputFormatError as second:
            raise MalformedOutputError(
                role.name,
                f"{action} output unusable after one corrective re-ask: {second} (a new run asks "
                f"the model again; a stronger model for {role.name} in MGX_LLM_ROLE_MODELS or the "
                "task's models follows the format more reliably)",
            ) from None

    async def _reply(
        self, role: Role, action: str, messages: list[ChatMessage]
    ) -> tuple[LLMResponse, list[ChatMessage], bool]:
        """The first reply, asking once for a shorter one if it was cut off at the token limit;
        returns it with the messages it answers and whether it had to be shortened."""
        try:
            return await self._chat(role, action, messages), messages, False
        except LLMTruncatedError as cut:
            await self._log(role, f"{cut.message}; asking once for a shorter answer")
        shorter = [
            *messages[:-1],
            {"role": "user", "content": f"{messages[-1]['content']}\n{prompts.SHORTER_ANSWER}"},
        ]
        try:
            return await self._chat(role, action, shorter), shorter, True
        except LLMTruncatedError as again:
            raise LLMTruncatedError(
                f"{again.message} (also after asking for a shorter answer)"
            ) from None

    async def _chat(self, role: Role, action: str, messages: list[ChatMessage]) -> LLMResponse:
        on_delta = None
        if self.stream_deltas:

            async def on_delta(text: str) -> None:
                await self.emit(AgentDelta(role=role.name, text=text))

        try:
            response = await self.session.chat(role.name, action, messages, on_delta=on_delta)
        except LLMTruncatedError:
            # The cut-off reply's tokens were counted and paid for.
            await self.emit(UsageUpdated(usage=self.session.usage.to_dict()))
            raise
        for warning in response.warnings:
            await self._log(role, f"{action}: {warning}")
        await self.emit(
            AgentMessage(
                role=role.name,
                action=action,
                content=response.content,
                llm=response.call,
                reasoning=response.reasoning or None,
            )
        )
        await self.emit(UsageUpdated(usage=self.session.usage.to_dict()))
        return response

    async def _log(self, role: Role, message: str) -> None:
        await self.emit(RunLog(level="warning", message=message, role=role.name))


def _answer(response: LLMResponse) -> str:
    if response.content.strip():
        return response.content
    if response.reasoning:
        raise OutputFormatError(
            "the reply holds only reasoning (a <think> block or reasoning field) and no answer "
            "after it; give the answer itself"
        )
    raise OutputFormatError("the reply is empty")


async def analyze_task(ctx: ActionContext, task: str) -> str:
    """Mike: the task's complexity, one of XS|S|M|L|XL."""
    return await ctx.ask(
        MIKE, "AnalyzeTask", prompts.analyze_prompt(task), parse_complexity, prompts.ANALYZE_FORMAT
    )


async def draft_plan(
    ctx: ActionContext,
    task: str,
    complexity: str,
    previous: Plan | None = None,
    feedback: str | None = None,
) -> Plan:
    """Mike: the plan, or a revised plan that answers a human's feedback."""
    prompt = prompts.plan_prompt(task, complexity, previous, feedback)
    return await ctx.ask(MIKE, "DraftPlan", prompt, parse_plan, prompts.PLAN_FORMAT)


async def write_code(
    ctx: ActionContext,
    task: str,
    plan: Plan,
    previous_files: list[SourceFile] | None = None,
    review: Review | None = None,
    report: dict | None = None,
) -> list[SourceFile]:
    """Alex: the code files; a revision sees the review notes and the failing test output."""
    prompt = prompts.code_prompt(task, plan, previous_files, review, report)
    return await ctx.ask(ALEX, "WriteCode", prompt, parse_code_files, prompts.CODE_FORMAT)


async def write_tests(
    ctx: ActionContext,
    task: str,
    plan: Plan,
    files: list[SourceFile],
    test_count: int,
    previous_tests: list[SourceFile] | None = None,
    review: Review | None = None,
    report: dict | None = None,
) -> list[SourceFile]:
    """Bob: pytest files for Alex's code; a revision sees the review and the test output."""
    code_paths = {source.path for source in files}
    prompt = prompts.tests_prompt(task, plan, files, test_count, previous_tests, review, report)

    def parse(text: str) -> list[SourceFile]:
        return parse_test_files(text, code_paths)

    return await ctx.ask(BOB, "WriteTest", prompt, parse, prompts.TEST_FORMAT)


async def review_code(
    ctx: ActionContext,
    task: str,
    plan: Plan,
    files: list[SourceFile],
    tests: list[SourceFile],
    report: dict | None,
) -> Review:
    """Charlie: APPROVED or CHANGES_REQUIRED with concrete notes."""
    prompt = prompts.review_prompt(task, plan, files, tests, report)
    return await ctx.ask(CHARLIE, "ReviewCode", prompt, parse_review, prompts.REVIEW_FORMAT)
