"""MGXStyleTeam: plan, approve, then code -> test -> verify -> review -> revise.

The team owns the order of the phases and the stopping rules. A revision goes to whoever owns
what the review says must change: Alex for the code, Bob for the tests, both in turn; when one
of them returns their files unchanged the other gets the review, and a round in which nobody
changed anything stalls the run. A run is approved only when Charlie approves and the tests
ran and passed (or could not run, or the task allows failing tests: the result says which);
an approval over failing tests counts as CHANGES_REQUIRED with the failures as its notes.
The rest: the actions own the prompts and
parsing, the session owns model choice, budget and cache, and the sandbox owns running tests.
All run state lives on the instance (nothing class-level), so many teams can share one event
loop. After every finished phase the team emits its JSON-serialisable ``state`` as a
checkpoint; ``MGXStyleTeam.from_state`` rebuilds a team that continues from there without
asking the model again for finished phases.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import Any

from mgx_agent import actions
from mgx_agent.actions import ActionContext
from mgx_agent.config import TeamConfig
from mgx_agent.errors import BudgetExceededError, MGXError
from mgx_agent.events import (
    AgentMessage,
    ArtifactProduced,
    EventCallback,
    PhaseFinished,
    PhaseStarted,
    PlanReady,
    RunLog,
    SandboxResult,
    TeamEvent,
)
from mgx_agent.cache import ResponseCache
from mgx_agent.llm.base import LLMClient
from mgx_agent.llm.pricing import PriceTable
from mgx_agent.llm.session import LLMSession
from mgx_agent.metrics import RunTimings, RunUsage
from mgx_agent.parsing import Plan, Review, SourceFile
from mgx_agent.sandbox import Sandbox
from mgx_agent.verification import TestVerdict, failing_tests_review, judge_test_run

STATE_VERSION = 1
OUTCOMES = ("approved", "revision_limit", "budget_exceeded", "stalled")

# (revision rounds, tests to write) by complexity, like the seed's _tune_budget: small tasks
# stop sooner and need fewer tests. The config's max_revision_rounds/max_rounds still cap it.
COMPLEXITY_TUNING: dict[str, tuple[int, int]] = {
    "XS": (1, 2),
    "S": (1, 3),
    "M": (2, 4),
    "L": (3, 5),
    "XL": (5, 6),
}

# Who revises what a review says must change, in order; and the phase each one works in.
_REVISERS = {"code": ("alex",), "tests": ("bob",), "both": ("alex", "bob")}
_REVISION_PHASES = {"alex": "revising", "bob": "testing"}

_MEDIA_TYPES = {".py": "text/x-python", ".md": "text/markdown", ".json": "application/json"}


def build_team_session(
    config: TeamConfig,
    client: LLMClient,
    *,
    default_model: str,
    role_models: dict[str, str] | None = None,
    cache: ResponseCache | None = None,
    prices: PriceTable | None = None,
    run_label: str = "",
    temperature: float = 0.2,
    max_tokens: int | None = None,
) -> LLMSession:
    """The LLMSession for one run under ``config``: its budget, its cache switch, and the
    per-role models of ``config.models`` (over ``role_models``) when ``use_multi_llm`` is on."""
    return LLMSession(
        client,
        default_model=default_model,
        role_models={**(role_models or {}), **config.role_models()},
        budget_usd=config.budget_usd,
        cache=cache if config.enable_caching else None,
        prices=prices,
        run_label=run_label,
        temperature=temperature,
        max_tokens=max_tokens,
    )


# Receives Charlie's review and what it judged (files, tests, sandbox report); returns the
# verdict that counts.
HumanReviewer = Callable[[Review, dict[str, Any]], Awaitable[Review]]


class PlanNotReadyError(MGXError):
    """A team method was called in the wrong order (no plan yet, or plan not approved)."""

    code = "plan_not_ready"


def media_type_for(name: str) -> str:
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _MEDIA_TYPES.get(suffix, "text/plain")


@dataclass
class TeamState:
    """Everything needed to resume a run after its last finished phase."""

    task: str = ""
    complexity: str | None = None
    plan: dict[str, Any] | None = None
    plan_approved: bool = False
    files: list[dict[str, str]] = field(default_factory=list)
    tests: list[dict[str, str]] = field(default_factory=list)
    sandbox_report: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    previous_review: dict[str, Any] | None = None
    round: int = 0  # revisions done so far
    next_phase: str = "coding"  # coding | testing | verifying | reviewing | revising | done
    # The revision round under way: who is still to revise ("alex", "bob"), who already did,
    # and whether anything changed. None outside revisions.
    revision: dict[str, Any] | None = None
    outcome: str | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **self.__dict__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeamState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported team state version {data.get('version')!r}")
        fields = {key: value for key, value in data.items() if key != "version"}
        return cls(**json.loads(json.dumps(fields)))


@dataclass(frozen=True)
class TeamResult:
    outcome: str  # approved | revision_limit | budget_exceeded | stalled
    plan: Plan
    complexity: str
    files: list[SourceFile]
    tests: list[SourceFile]
    sandbox_report: dict[str, Any] | None
    review: Review | None
    rounds: int  # review rounds run (1 = approved or stopped without revising)
    usage: dict[str, Any]
    timings: dict[str, float]
    demo: bool
    stop_reason: str | None = None
    # Whether the tests backed the outcome: {"tests": "passed"|"failing"|"not_run",
    # "required": bool, "detail": str}.
    verification: dict[str, Any] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "plan": self.plan.model_dump(),
            "complexity": self.complexity,
            "files": [source.to_dict() for source in self.files],
            "tests": [source.to_dict() for source in self.tests],
            "sandbox_report": self.sandbox_report,
            "review": self.review.to_dict() if self.review else None,
            "rounds": self.rounds,
            "usage": self.usage,
            "timings": self.timings,
            "demo": self.demo,
            "stop_reason": self.stop_reason,
            "verification": self.verification,
        }


class MGXStyleTeam:
    """One team working on one task; create a new instance (and session) per run."""

    def __init__(
        self,
        config: TeamConfig,
        llm: LLMSession,
        on_event: EventCallback | None = None,
        sandbox: Sandbox | None = None,
        human_review: HumanReviewer | None = None,
    ) -> None:
        if config.human_reviewer and human_review is None:
            raise ValueError("human_reviewer is on but no human_review callback was given to ask the human")
        self.human_review = human_review
        self.config = config
        self.llm = llm
        self.sandbox = sandbox or Sandbox(config.sandbox)
        self.timings = RunTimings()
        # The recent agent messages of this run, bounded like the seed's team memory.
        self.memory: deque[AgentMessage] = deque(maxlen=config.max_memory_size)
        self._on_event = on_event
        self._state = TeamState()
        self._actions = ActionContext(llm, self._emit, config.stream_deltas)

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        config: TeamConfig,
        llm: LLMSession,
        on_event: EventCallback | None = None,
        sandbox: Sandbox | None = None,
        human_review: HumanReviewer | None = None,
    ) -> MGXStyleTeam:
        team = cls(config, llm, on_event, sandbox, human_review)
        team.restore(state)
        return team

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: usage and timings keep counting from the saved values."""
        self._state = TeamState.from_dict(state)
        self.llm.usage = RunUsage.from_dict(self._state.usage)
        self.timings = RunTimings.from_dict(self._state.timings)

    @property
    def state(self) -> dict[str, Any]:
        self._state.usage = self.llm.usage.to_dict()
        self._state.timings = self.timings.to_dict()
        return self._state.to_dict()

    @property
    def plan(self) -> Plan | None:
        return Plan.model_validate(self._state.plan) if self._state.plan else None

    @property
    def plan_approved(self) -> bool:
        return self._state.plan_approved

    def tuned_limits(self, complexity: str) -> tuple[int, int]:
        """(revision rounds allowed, tests to ask for) for a complexity, within the caps."""
        revisions, tests = COMPLEXITY_TUNING.get(complexity, COMPLEXITY_TUNING["M"])
        return min(revisions, self.config.revision_limit()), tests

    # Planning

    async def analyze_and_plan(self, task: str) -> Plan:
        if not task.strip():
            raise ValueError("task must not be empty")
        self._state = TeamState(task=task.strip())
        async with self._phase("planning"):
            complexity = await actions.analyze_task(self._actions, self._state.task)
            plan = await actions.draft_plan(self._actions, self._state.task, complexity)
            await self._accept_plan(plan)
        return plan

    def approve_plan(self) -> None:
        if self._state.plan is None:
            raise PlanNotReadyError("there is no plan to approve; call analyze_and_plan first")
        self._state.plan_approved = True

    async def reject_plan(self, feedback: str) -> Plan:
        """Re-plan with a human's feedback; the new plan needs approval again."""
        previous = self.plan
        if previous is None:
            raise PlanNotReadyError("there is no plan to reject; call analyze_and_plan first")
        async with self._phase("planning"):
            plan = await actions.draft_plan(
                self._actions, self._state.task, previous.complexity, previous, feedback
            )
            await self._accept_plan(plan)
        return plan

    async def _accept_plan(self, plan: Plan) -> None:
        self._state.plan = plan.model_dump()
        self._state.complexity = plan.complexity
        self._state.plan_approved = self.config.auto_approve_plan
        await self._emit(PlanReady(plan=self._state.plan))
        await self._artifact("plan.json", json.dumps(self._state.plan, indent=2))

    # Execution

    async def execute(self) -> TeamResult:
        """Run the phases until approved, out of revisions, stalled or out of budget."""
        plan = self.plan
        if plan is None:
            raise PlanNotReadyError("there is no plan; call analyze_and_plan first")
        if not (self._state.plan_approved or self.config.auto_approve_plan):
            raise PlanNotReadyError("the plan is not approved; call approve_plan first")
        self._state.plan_approved = True
        revision_limit, test_count = self.tuned_limits(plan.complexity)
        try:
            while self._state.next_phase != "done":
                await self._run_phase(self._state.next_phase, plan, revision_limit, test_count)
        except BudgetExceededError as exc:
            self._finish("budget_exceeded", exc.message)
        return self._result(plan)

    async def _run_phase(
        self, phase: str, plan: Plan, revision_limit: int, test_count: int
    ) -> None:
        state = self._state
        async with self._phase(phase):
            if phase == "coding":
                files = await actions.write_code(self._actions, state.task, plan)
                await self._store_files(files)
                state.next_phase = "testing"
            elif phase == "revising":
                await self._revise_code(plan)
            elif phase == "testing" and state.revision is None:
                tests = await actions.write_tests(
                    self._actions, state.task, plan, self._files(state.files), test_count
                )
                await self._store_tests(tests)
                state.next_phase = "verifying"
            elif phase == "testing":
                await self._revise_tests(plan, test_count)
            elif phase == "verifying":
                report = await self.sandbox.run(self._files(state.files), self._files(state.tests))
                state.sandbox_report = report.to_dict()
                await self._emit(SandboxResult(report=state.sandbox_report))
                report_json = json.dumps(state.sandbox_report, indent=2)
                await self._artifact("sandbox-report.json", report_json)
                state.next_phase = "reviewing"
            elif phase == "reviewing":
                review = await actions.review_code(
                    self._actions,
                    state.task,
                    plan,
                    self._files(state.files),
                    self._files(state.tests),
                    state.sandbox_report,
                )
                if self.config.human_reviewer and self.human_review is not None:
                    review = await self._ask_human(review)
                review = await self._hold_to_test_results(review)
                state.previous_review, state.review = state.review, review.to_dict()
                await self._artifact("review.md", review.to_markdown())
                self._decide_after_review(review, revision_limit)
            else:
                raise ValueError(f"unknown phase {phase!r} in team state")

    async def _revise_code(self, plan: Plan) -> None:
        state = self._state
        if state.revision is None:
            # A checkpoint from before revisions were routed: its round is not counted yet.
            state.round += 1
            state.revision = {"queue": ["alex"], "done": [], "changed": False}
        previous = self._files(state.files)
        review = Review.from_dict(state.review) if state.review else None
        files = await actions.write_code(
            self._actions, state.task, plan, previous, review, state.sandbox_report
        )
        changed = files != previous
        if changed:
            await self._store_files(files)
        else:
            await self._log("alex returned the code unchanged", "alex")
        self._revised("alex", changed, fallback="bob")

    async def _revise_tests(self, plan: Plan, test_count: int) -> None:
        state = self._state
        previous = self._files(state.tests)
        review = Review.from_dict(state.review) if state.review else None
        tests = await actions.write_tests(
            self._actions,
            state.task,
            plan,
            self._files(state.files),
            test_count,
            previous,
            review,
            state.sandbox_report,
        )
        changed = tests != previous
        if changed:
            await self._store_tests(tests)
        else:
            await self._log("bob returned the tests unchanged", "bob")
        self._revised("bob", changed, fallback="alex")

    def _revised(self, who: str, changed: bool, *, fallback: str) -> None:
        """Record one member's revision and hand the round on: to the other member when this
        one changed nothing (and the other has not had the review yet), else to the sandbox."""
        revision = self._state.revision
        assert revision is not None
        revision["queue"] = [name for name in revision["queue"] if name != who]
        revision["done"].append(who)
        revision["changed"] = revision["changed"] or changed
        if not changed and fallback not in revision["done"] and fallback not in revision["queue"]:
            revision["queue"].append(fallback)
        if revision["queue"]:
            self._state.next_phase = _REVISION_PHASES[revision["queue"][0]]
        elif revision["changed"]:
            self._state.revision = None
            self._state.next_phase = "verifying"
        else:
            self._finish(
                "stalled",
                f"revision {self._state.round}: neither the code nor the tests changed "
                "after the review",
            )

    async def _store_files(self, files: list[SourceFile]) -> None:
        self._state.files = [source.to_dict() for source in files]
        for source in files:
            await self._artifact(source.path, source.content)

    async def _store_tests(self, tests: list[SourceFile]) -> None:
        self._state.tests = [source.to_dict() for source in tests]
        for source in tests:
            await self._artifact(source.path, source.content)

    async def _hold_to_test_results(self, review: Review) -> Review:
        """An approval counts only over passing tests (unless the task waives that)."""
        verdict = judge_test_run(self._state.sandbox_report)
        if not review.approved or verdict.tests != "failing" or not self.config.require_passing_tests:
            return review
        changed = failing_tests_review(review, self._state.sandbox_report or {}, verdict)
        await self._log(
            f"the reviewer approved, but the tests did not pass ({verdict.detail}): "
            "treated as CHANGES_REQUIRED",
            "charlie",
        )
        return changed

    async def _ask_human(self, review: Review) -> Review:
        assert self.human_review is not None
        state = self._state
        context = {"files": state.files, "tests": state.tests, "sandbox_report": state.sandbox_report}
        decided = await self.human_review(review, context)
        await self._emit(AgentMessage(role="human", action="HumanReview", content=decided.text))
        return decided

    def _decide_after_review(self, review: Review, revision_limit: int) -> None:
        state = self._state
        previous = state.previous_review
        repeated = (
            previous is not None
            and previous["verdict"] == review.verdict
            and previous["notes"] == list(review.notes)
        )
        if review.approved:
            self._finish("approved", self._verification().unproven_reason(self.config))
        elif repeated:
            self._finish("stalled", "the review repeated the previous round's notes unchanged")
        elif state.round >= revision_limit:
            reason = f"changes still required after {state.round} revision(s)"
            self._finish("revision_limit", reason)
        else:
            state.round += 1
            queue = list(_REVISERS[review.changes_in])
            state.revision = {"queue": queue, "done": [], "changed": False}
            state.next_phase = _REVISION_PHASES[queue[0]]

    def _verification(self) -> TestVerdict:
        return judge_test_run(self._state.sandbox_report)

    def _finish(self, outcome: str, reason: str | None) -> None:
        self._state.outcome = outcome
        self._state.stop_reason = reason
        self._state.next_phase = "done"
        self._state.revision = None

    def _result(self, plan: Plan) -> TeamResult:
        state = self._state
        verdict = self._verification()
        return TeamResult(
            outcome=state.outcome or "stalled",
            plan=plan,
            complexity=plan.complexity,
            files=self._files(state.files),
            tests=self._files(state.tests),
            sandbox_report=state.sandbox_report,
            review=Review.from_dict(state.review) if state.review else None,
            rounds=state.round + 1 if state.review else state.round,
            usage=self.llm.usage.to_dict(),
            timings=self.timings.to_dict(),
            demo=self.llm.provider == "demo",
            stop_reason=state.stop_reason,
            verification={
                "tests": verdict.tests,
                "required": self.config.require_passing_tests,
                "detail": verdict.detail,
            },
        )

    # Plumbing

    @staticmethod
    def _files(data: list[dict[str, str]]) -> list[SourceFile]:
        return [SourceFile(item["path"], item["content"]) for item in data]

    async def _emit(self, event: TeamEvent) -> None:
        if isinstance(event, AgentMessage):
            self.memory.append(event)
        if self._on_event is not None:
            await self._on_event(event)

    async def _log(self, message: str, role: str | None = None) -> None:
        await self._emit(RunLog(level="warning", message=message, role=role))

    async def _artifact(self, name: str, content: str) -> None:
        media_type = media_type_for(name)
        await self._emit(ArtifactProduced(name=name, media_type=media_type, content=content))

    def _phase(self, phase: str) -> _PhaseSpan:
        return _PhaseSpan(self, phase)


class _PhaseSpan:
    """Times a phase and emits PhaseStarted / PhaseFinished (with the checkpoint) around it.

    PhaseFinished is only emitted when the phase completed; a phase that raised (cancelled,
    out of budget, malformed output) did not finish and must be redone on resume.
    """

    def __init__(self, team: MGXStyleTeam, phase: str) -> None:
        self.team = team
        self.phase = phase
        self._started = 0.0

    async def __aenter__(self) -> None:
        await self.team._emit(PhaseStarted(phase=self.phase, round=self.team._state.round))
        self._started = time.perf_counter()

    async def __aexit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        # Time is recorded on failure too (it was spent); the phase only "finished" on success.
        seconds = time.perf_counter() - self._started
        self.team.timings.record(self.phase, seconds)
        if exc_type is None:
            checkpoint = self.team.state
            await self.team._emit(
                PhaseFinished(phase=self.phase, seconds=round(seconds, 6), checkpoint=checkpoint)
            )
