"""The MetaGPT engine's worker: runs in MetaGPT's own interpreter (``MGX_METAGPT_PYTHON``), never
in the service's, and speaks the line protocol of ``protocol.py`` on its stdin/stdout.

    <metagpt-venv>/bin/python mgx_agent/engines/metagpt_worker.py            serve one call
    <metagpt-venv>/bin/python mgx_agent/engines/metagpt_worker.py --check    report the install

The team is MetaGPT's: Mike, Alex, Bob and Charlie are ``metagpt.roles.Role`` subclasses whose
``metagpt.actions.Action`` subclasses ask the model with the MGX prompts and parse its replies
with the MGX parsers (``mgx_agent.prompts`` / ``mgx_agent.parsing``, which need only pydantic),
so plans and artifacts have the native engine's shape. A ``metagpt.team.Team`` runs them: each
message is addressed (``send_to``) to whoever owns the next phase, as the review routing
decides, and the run ends when nobody is addressed. The shared ``RunBoard`` holds the run's
state (the native team's state dict, so checkpoints are interchangeable) and the link to the
service: every model call asks the service first (the budget), every reply is reported (usage),
and the generated tests are sent to the service's sandbox.

MetaGPT's ``Team.run`` and ``Role.run`` swallow or rewrap exceptions; the board keeps the first
real one an action raised, and what MetaGPT itself logged as an error, so the service is told
the real cause.
"""

from __future__ import annotations

import os
import sys

# The protocol owns the original stdout; everything else printed on fd 1 (MetaGPT's streamed
# tokens, print() in any library) goes to stderr. Done before any other import can print.
_PROTOCOL_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr

import asyncio
import importlib.metadata
import importlib.util
import json
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# Run as a script, sys.path[0] is this directory; the repository root is what we import from.
_REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[0] = str(_REPO_ROOT)

from mgx_agent import prompts
from mgx_agent.engines.protocol import PROTOCOL_VERSION, decode, encode
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
from mgx_agent.roles import ALEX, BOB, CHARLIE, MIKE
from mgx_agent.verification import failing_tests_review, judge_test_run


def _load_split_reasoning() -> Any:
    """``mgx_agent.llm.reasoning.split_reasoning`` (stdlib only), loaded by path: importing the
    ``mgx_agent.llm`` package would need the service's environment (httpx, pydantic-settings)."""
    spec = importlib.util.spec_from_file_location(
        "mgx_reasoning", _REPO_ROOT / "mgx_agent" / "llm" / "reasoning.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.split_reasoning


# The model's thinking (<think> blocks, reasoning_content) is split off as the native session does.
split_reasoning = _load_split_reasoning()
ENGINE = "metagpt"
_PHASE_OWNERS = {
    "coding": "Alex",
    "revising": "Alex",
    "testing": "Bob",
    "verifying": "Bob",
    "reviewing": "Charlie",
}
# The same routing as the native team (mgx_agent/team.py): who revises what a review names.
_REVISERS = {"code": ("alex",), "tests": ("bob",), "both": ("alex", "bob")}
_REVISION_PHASES = {"alex": "revising", "bob": "testing"}
_MEDIA_TYPES = {".py": "text/x-python", ".md": "text/markdown", ".json": "application/json"}


class WorkerFailure(Exception):
    """A failure with the code the service stores on the run."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def metagpt_version() -> str:
    return importlib.metadata.version("metagpt")


def media_type_for(name: str) -> str:
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _MEDIA_TYPES.get(suffix, "text/plain")


class ServiceLink:
    """Both directions of the protocol: lines out on the claimed stdout, lines in from stdin
    (read by a thread, since stdin may be a pipe the event loop cannot always watch)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="protocol-in", daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            _PROTOCOL_OUT.write(encode(message))

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[self._next_id] = future
        self.send({"type": "request", "id": self._next_id, "kind": kind, **fields})
        return await future

    def _read(self) -> None:
        for line in sys.stdin.buffer:
            message = decode(line)
            if message["type"] == "cancel":
                os._exit(0)
            if message["type"] == "reply":
                self.loop.call_soon_threadsafe(self._resolve, message)
        # The service is gone: nobody will read what this run produces.
        os._exit(0)

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._pending.pop(int(message["id"]), None)
        if future is not None and not future.done():
            future.set_result(message)


class RunBoard:
    """One run's state and its link to the service, shared by the roles' actions."""

    def __init__(self, link: ServiceLink, start: dict[str, Any]) -> None:
        self.link = link
        self.state: dict[str, Any] = dict(
            start.get("state") or {"version": 1, "task": start["task"]}
        )
        self.state.setdefault("task", start["task"])
        self.limits = start.get("limits") or {}
        self.failure: BaseException | None = None
        self.metagpt_errors: list[str] = []

    def emit(self, type_: str, **data: Any) -> None:
        self.link.send({"type": "event", "event": {"type": type_, **data}})

    def log(self, message: str, role: str | None = None) -> None:
        self.emit("run.log", level="warning", message=message, role=role)

    def artifact(self, name: str, content: str) -> None:
        self.emit("artifact.created", name=name, media_type=media_type_for(name), content=content)

    def phase_started(self, phase: str) -> float:
        self.emit("run.phase", phase=phase, round=self.state.get("round", 0))
        return time.perf_counter()

    def phase_finished(self, phase: str, started: float) -> None:
        seconds = round(time.perf_counter() - started, 6)
        self.emit("run.phase_finished", phase=phase, seconds=seconds, checkpoint=self.state)

    def files(self, key: str) -> list[SourceFile]:
        return [SourceFile(item["path"], item["content"]) for item in self.state.get(key) or []]

    @property
    def plan(self) -> Plan:
        return Plan.model_validate(self.state["plan"])

    def finish(self, outcome: str, reason: str | None) -> None:
        self.state.update(outcome=outcome, stop_reason=reason, next_phase="done", revision=None)


def build_team(board: RunBoard, start: dict[str, Any], action: str) -> Any:
    """MetaGPT's Team of MGX roles for one call (imported here: MetaGPT needs its config first)."""
    from metagpt.actions import Action, UserRequirement
    from metagpt.configs.llm_config import LLMConfig
    from metagpt.context import Context
    from metagpt.provider.openai_api import OpenAILLM
    from metagpt.roles import Role
    from metagpt.schema import Message
    from metagpt.team import Team
    from openai import AsyncOpenAI
    from pydantic import Field

    settings = start["llm"]

    class MGXOpenAILLM(OpenAILLM):
        """MetaGPT's OpenAI provider, with the service's rules: ask before each call, report
        each reply, send the X-MGX-* headers, no retry loop of MetaGPT's own (the client's
        max_retries is the service's)."""

        def _init_client(self) -> None:
            super()._init_client()
            self.aclient = AsyncOpenAI(
                api_key=self.config.api_key,
                base_url=self.config.base_url,
                max_retries=int(settings.get("max_retries", 2)),
            )

        async def ask_as(
            self, role: str, action_name: str, messages: list[dict[str, str]]
        ) -> tuple[str, str]:
            await board.link.request("model_call", role=role, action=action_name)
            headers = {
                "X-MGX-Role": role,
                "X-MGX-Action": action_name,
                "X-MGX-Run": settings.get("run_label", ""),
            }
            kwargs = self._cons_kwargs(
                messages, timeout=self.get_timeout(None), extra_headers=headers
            )
            if settings.get("max_tokens") is None:
                kwargs.pop("max_tokens", None)
            response = await self.aclient.chat.completions.create(**kwargs)
            self._update_costs(response.usage)
            choice = response.choices[0] if response.choices else None
            split = split_reasoning((choice.message.content or "") if choice else "")
            extra = (choice.message.model_extra or {}) if choice else {}
            reasoning = "\n\n".join(
                part for part in (extra.get("reasoning_content"), split.reasoning) if part
            )
            content = split.answer
            usage = response.usage
            board.emit(
                "agent.message",
                role=role,
                action=action_name,
                content=content,
                reasoning=reasoning or None,
                llm={
                    "model": response.model or self.model,
                    "prompt_tokens": usage.prompt_tokens if usage else 0,
                    "completion_tokens": usage.completion_tokens if usage else 0,
                    "estimated": usage is None,
                },
            )
            return content, (choice.finish_reason or "stop") if choice else "stop"

    clients: dict[str, MGXOpenAILLM] = {}

    def llm_for(role: str) -> MGXOpenAILLM:
        # One MetaGPT client per distinct model, shared by the roles that use it.
        model = (settings.get("role_models") or {}).get(role) or settings["model"]
        if model not in clients:
            config = LLMConfig(
                api_type="openai",
                api_key=settings["api_key"] or "sk-none",
                base_url=settings["base_url"],
                model=model,
                temperature=settings.get("temperature", 0.2),
                max_token=settings.get("max_tokens") or 4096,
                timeout=int(settings.get("timeout_seconds", 120)),
                stream=False,
            )
            clients[model] = MGXOpenAILLM(config)
        return clients[model]

    class MGXAction(Action):
        """An MGX action: our prompt, MetaGPT's model call, our parser with one corrective
        re-ask; ``phase`` (None for planning) is timed and checkpointed around ``work``."""

        phase: str | None = None
        member: str = ""

        async def ask(self, prompt: str, parse: Any, format_instructions: str) -> Any:
            member = {"mike": MIKE, "alex": ALEX, "bob": BOB, "charlie": CHARLIE}[self.member]
            messages = [
                {"role": "system", "content": member.system_prompt},
                {"role": "user", "content": prompt},
            ]
            llm = llm_for(self.member)
            reply = await self._reply(llm, messages)
            try:
                return parse(_answer(reply))
            except OutputFormatError as first:
                board.log(f"{self.name} reply refused ({first}); asking once more", self.member)
                correction = prompts.correction_prompt(str(first), format_instructions)
                messages = [
                    *messages,
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": correction},
                ]
            reply, finish = await llm.ask_as(self.member, self.name, messages)
            if finish == "length":
                raise WorkerFailure(
                    "llm_truncated",
                    f"{self.member}'s {self.name} reply was cut off at the output token limit",
                )
            try:
                return parse(_answer(reply))
            except OutputFormatError as second:
                raise WorkerFailure(
                    "malformed_output",
                    f"{self.member}: {self.name} output unusable after one corrective re-ask: {second}",
                ) from None

        async def _reply(self, llm: MGXOpenAILLM, messages: list[dict[str, str]]) -> str:
            reply, finish = await llm.ask_as(self.member, self.name, messages)
            if finish != "length":
                return reply
            board.log(
                f"{self.member}'s {self.name} reply was cut off; asking once for a shorter answer",
                self.member,
            )
            shorter = [
                *messages[:-1],
                {"role": "user", "content": f"{messages[-1]['content']}\n{prompts.SHORTER_ANSWER}"},
            ]
            reply, finish = await llm.ask_as(self.member, self.name, shorter)
            if finish == "length":
                raise WorkerFailure(
                    "llm_truncated",
                    f"{self.member}'s {self.name} reply was cut off at the output token limit "
                    "(also after asking for a shorter answer): raise MGX_LLM_MAX_TOKENS",
                )
            return reply

        async def run(self, *args: Any, **kwargs: Any) -> str:
            started = board.phase_started(self.phase) if self.phase else 0.0
            try:
                said = await self.work()
            except BaseException as exc:
                # Role.run rewraps this and Team.run swallows it: keep the real one.
                board.failure = board.failure or exc
                raise
            if self.phase:
                board.phase_finished(self.phase, started)
            return said

        async def work(self) -> str:
            """The action's own step: every action below defines it."""
            raise TypeError(f"{type(self).__name__} defines no work()")

    class AnalyzeTask(MGXAction):
        name: str = "AnalyzeTask"
        member: str = "mike"

        async def work(self) -> str:
            complexity = await self.ask(
                prompts.analyze_prompt(board.state["task"]),
                parse_complexity,
                prompts.ANALYZE_FORMAT,
            )
            board.state["complexity"] = complexity
            return complexity

    class DraftPlan(MGXAction):
        name: str = "DraftPlan"
        member: str = "mike"

        async def work(self) -> str:
            state = board.state
            previous = (
                Plan.model_validate(state["plan"])
                if start.get("feedback") and state.get("plan")
                else None
            )
            complexity = previous.complexity if previous else state["complexity"]
            prompt = prompts.plan_prompt(state["task"], complexity, previous, start.get("feedback"))
            plan: Plan = await self.ask(prompt, parse_plan, prompts.PLAN_FORMAT)
            state.update(
                plan=plan.model_dump(),
                complexity=plan.complexity,
                plan_approved=bool(start.get("auto_approve")),
            )
            board.emit("run.plan_ready", plan=state["plan"])
            board.artifact("plan.json", json.dumps(state["plan"], indent=2))
            return json.dumps(state["plan"])

    class WriteCode(MGXAction):
        name: str = "WriteCode"
        member: str = "alex"

        async def work(self) -> str:
            state = board.state
            revising = self.phase == "revising"
            if revising and state.get("revision") is None:
                state["round"] = state.get("round", 0) + 1
                state["revision"] = {"queue": ["alex"], "done": [], "changed": False}
            previous = board.files("files") if revising else None
            review = Review.from_dict(state["review"]) if revising and state.get("review") else None
            report = state.get("sandbox_report") if revising else None
            prompt = prompts.code_prompt(state["task"], board.plan, previous, review, report)
            files = await self.ask(prompt, parse_code_files, prompts.CODE_FORMAT)
            changed = files != previous
            if changed:
                state["files"] = [source.to_dict() for source in files]
                for source in files:
                    board.artifact(source.path, source.content)
            if revising:
                if not changed:
                    board.log("alex returned the code unchanged", "alex")
                revised("alex", changed, fallback="bob")
            else:
                state["next_phase"] = "testing"
            return "\n".join(source.path for source in files)

    class WriteTest(MGXAction):
        name: str = "WriteTest"
        member: str = "bob"

        async def work(self) -> str:
            state = board.state
            revising = state.get("revision") is not None
            files = board.files("files")
            previous = board.files("tests") if revising else None
            review = Review.from_dict(state["review"]) if revising and state.get("review") else None
            report = state.get("sandbox_report") if revising else None
            prompt = prompts.tests_prompt(
                state["task"],
                board.plan,
                files,
                int(board.limits.get("tests", 4)),
                previous,
                review,
                report,
            )
            paths = {source.path for source in files}
            tests = await self.ask(
                prompt, lambda text: parse_test_files(text, paths), prompts.TEST_FORMAT
            )
            changed = tests != previous
            if changed:
                state["tests"] = [source.to_dict() for source in tests]
                for source in tests:
                    board.artifact(source.path, source.content)
            if revising:
                if not changed:
                    board.log("bob returned the tests unchanged", "bob")
                revised("bob", changed, fallback="alex")
            else:
                state["next_phase"] = "verifying"
            return "\n".join(source.path for source in tests)

    class RunTests(MGXAction):
        """The tests run in the service's sandbox, never in this interpreter."""

        name: str = "RunTests"
        member: str = "bob"

        async def work(self) -> str:
            state = board.state
            reply = await board.link.request(
                "sandbox", files=state.get("files") or [], tests=state.get("tests") or []
            )
            state["sandbox_report"] = reply["report"]
            board.emit("sandbox.result", report=reply["report"])
            board.artifact("sandbox-report.json", json.dumps(reply["report"], indent=2))
            state["next_phase"] = "reviewing"
            return json.dumps(
                {key: reply["report"].get(key) for key in ("passed", "failed", "errors")}
            )

    class ReviewCode(MGXAction):
        name: str = "ReviewCode"
        member: str = "charlie"

        async def work(self) -> str:
            state = board.state
            prompt = prompts.review_prompt(
                state["task"],
                board.plan,
                board.files("files"),
                board.files("tests"),
                state.get("sandbox_report"),
            )
            review: Review = await self.ask(prompt, parse_review, prompts.REVIEW_FORMAT)
            review = hold_to_test_results(review)
            state["previous_review"], state["review"] = state.get("review"), review.to_dict()
            board.artifact("review.md", review.to_markdown())
            decide_after_review(review)
            return review.text

    def hold_to_test_results(review: Review) -> Review:
        report = board.state.get("sandbox_report")
        verdict = judge_test_run(report)
        if (
            not review.approved
            or verdict.tests != "failing"
            or not board.limits.get("require_passing_tests", True)
        ):
            return review
        board.log(
            f"the reviewer approved, but the tests did not pass ({verdict.detail}): treated as CHANGES_REQUIRED",
            "charlie",
        )
        return failing_tests_review(review, report or {}, verdict)

    def decide_after_review(review: Review) -> None:
        state = board.state
        previous = state.get("previous_review")
        repeated = (
            previous is not None
            and previous["verdict"] == review.verdict
            and previous["notes"] == list(review.notes)
        )
        if review.approved:
            board.finish("approved", None)
        elif repeated:
            board.finish("stalled", "the review repeated the previous round's notes unchanged")
        elif state.get("round", 0) >= int(board.limits.get("revision_rounds", 2)):
            board.finish(
                "revision_limit",
                f"changes still required after {state.get('round', 0)} revision(s)",
            )
        else:
            state["round"] = state.get("round", 0) + 1
            queue = list(_REVISERS[review.changes_in])
            state["revision"] = {"queue": queue, "done": [], "changed": False}
            state["next_phase"] = _REVISION_PHASES[queue[0]]

    def revised(who: str, changed: bool, *, fallback: str) -> None:
        revision = board.state["revision"]
        revision["queue"] = [name for name in revision["queue"] if name != who]
        revision["done"].append(who)
        revision["changed"] = revision["changed"] or changed
        if not changed and fallback not in revision["done"] and fallback not in revision["queue"]:
            revision["queue"].append(fallback)
        if revision["queue"]:
            board.state["next_phase"] = _REVISION_PHASES[revision["queue"][0]]
        elif revision["changed"]:
            board.state["revision"] = None
            board.state["next_phase"] = "verifying"
        else:
            board.finish(
                "stalled",
                f"revision {board.state['round']}: neither the code nor the tests changed after the review",
            )

    class MGXRole(Role):
        """A member who does the action of the phase the message was addressed for, then
        addresses the owner of the phase that comes next (nobody once the run is done)."""

        phase_actions: dict[str, str] = Field(default_factory=dict)

        async def _think(self) -> bool:
            if self.rc.react_mode == "by_order":
                return await super()._think()
            phase = board.state.get("next_phase", "coding")
            names = [action.name for action in self.actions]
            self._set_state(names.index(self.phase_actions[phase]))
            for member_action in self.actions:
                if member_action.name == self.phase_actions[phase]:
                    member_action.phase = phase
            return True

        async def _act(self) -> Message:
            said = await self.rc.todo.run(self.rc.history)
            owner = _PHASE_OWNERS.get(board.state.get("next_phase", "done"))
            message = Message(
                content=said, role=self.profile, cause_by=self.rc.todo, sent_from=self
            )
            message.send_to = (
                {owner} if owner and self.rc.react_mode != "by_order" else {"<nobody>"}
            )
            # Not kept in the sender's memory: a message Bob addresses to himself (tests written,
            # now run them) would otherwise count as already seen and never be observed.
            return message

    context = Context()
    if action == "execute":
        alex = MGXRole(
            name="Alex",
            profile="Engineer",
            phase_actions={"coding": "WriteCode", "revising": "WriteCode"},
        )
        alex.set_actions([WriteCode])
        bob = MGXRole(
            name="Bob",
            profile="QA Engineer",
            phase_actions={"testing": "WriteTest", "verifying": "RunTests"},
        )
        bob.set_actions([WriteTest, RunTests])
        charlie = MGXRole(
            name="Charlie", profile="Reviewer", phase_actions={"reviewing": "ReviewCode"}
        )
        charlie.set_actions([ReviewCode])
        members = [alex, bob, charlie]
        first = _PHASE_OWNERS[board.state.get("next_phase", "coding")]
        kickoff = Message(
            content=board.state["task"], role="Human", cause_by=UserRequirement, send_to={first}
        )
    else:
        mike = MGXRole(name="Mike", profile="Team Leader")
        mike.set_actions([DraftPlan] if action == "replan" else [AnalyzeTask, DraftPlan])
        mike._set_react_mode("by_order")
        mike._watch([UserRequirement])
        members = [mike]
        kickoff = Message(
            content=board.state["task"], role="Human", cause_by=UserRequirement, send_to={"Mike"}
        )
    for member in members:
        member.llm = llm_for(member.name.lower())
    team = Team(context=context)
    # The budget is the service's (its prices, its cap); MetaGPT's own $10 default must not stop
    # a run on its price table.
    team.invest(float("inf"))
    team.hire(members)
    team.env.publish_message(kickoff, peekable=False)
    return team


def _answer(reply: str) -> str:
    if reply.strip():
        return reply
    raise OutputFormatError("the reply is empty")


def write_metagpt_config(root: Path, settings: dict[str, Any]) -> None:
    """MetaGPT reads its config at import time, from ``$METAGPT_PROJECT_ROOT/config``. The real
    key is never written: the clients get it from the start message."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "config2.yaml").write_text(
        "llm:\n"
        '  api_type: "openai"\n'
        f"  model: {json.dumps(settings['model'])}\n"
        f"  base_url: {json.dumps(settings['base_url'])}\n"
        '  api_key: "sk-set-per-client"\n'
        "  stream: false\n"
    )


async def serve(start: dict[str, Any]) -> None:
    link = ServiceLink(asyncio.get_running_loop())
    board = RunBoard(link, start)
    link.send(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "engine": ENGINE,
            "version": metagpt_version(),
        }
    )
    try:
        from metagpt.logs import logger

        # Team.run logs what it swallows at ERROR; keep it as the cause if nothing better is known.
        logger.add(
            lambda record: board.metagpt_errors.append(str(record)),
            level="ERROR",
            format="{message}",
        )
        action = start["action"]
        team = build_team(board, start, action)
        if action == "execute":
            board.state["plan_approved"] = True
            rounds = 4 + 4 * int(board.limits.get("revision_rounds", 2)) + 2
        else:
            rounds = 2
            started = board.phase_started("planning")
        await team.run(n_round=rounds, auto_archive=False)
        if board.failure is not None:
            raise board.failure
        incomplete = (
            board.state.get("next_phase") != "done"
            if action == "execute"
            else "plan" not in board.state
        )
        if board.metagpt_errors and incomplete:
            raise WorkerFailure("metagpt_error", board.metagpt_errors[-1].strip()[-4000:])
        if action != "execute":
            if "plan" not in board.state:
                raise WorkerFailure("metagpt_error", "MetaGPT's team ended without a plan")
            board.phase_finished("planning", started)
        elif incomplete:
            raise WorkerFailure(
                "metagpt_error", f"MetaGPT's team stopped at phase {board.state.get('next_phase')}"
            )
        link.send({"type": "done", "state": board.state})
    except WorkerFailure as failure:
        link.send({"type": "error", "code": failure.code, "message": failure.message, "detail": ""})
    except Exception as exc:  # noqa: BLE001 - whatever MetaGPT raised is the run's cause
        link.send(
            {
                "type": "error",
                "code": _error_code(exc),
                "message": f"{type(exc).__name__}: {exc}",
                "detail": traceback.format_exc(),
            }
        )


def _error_code(exc: BaseException) -> str:
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("openai"):
        return {
            "AuthenticationError": "llm_auth",
            "PermissionDeniedError": "llm_auth",
            "RateLimitError": "llm_rate_limited",
            "APITimeoutError": "llm_timeout",
            "APIConnectionError": "llm_unreachable",
        }.get(name, "llm_error")
    return "metagpt_error"


def check() -> None:
    """One JSON line: the MetaGPT version and that its team modules import."""
    root = Path(os.environ.get("METAGPT_PROJECT_ROOT") or "")
    made_root = not root.name
    if made_root:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="mgx-metagpt-check-"))
        os.environ["METAGPT_PROJECT_ROOT"] = str(root)
    write_metagpt_config(root, {"model": "check", "base_url": "http://127.0.0.1:9/v1"})
    from metagpt.team import Team  # noqa: F401

    _PROTOCOL_OUT.write(
        encode({"engine": ENGINE, "version": metagpt_version(), "python": sys.version.split()[0]})
    )
    if made_root:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        check()
        return
    start = decode(sys.stdin.buffer.readline())
    if start.get("type") != "start" or start.get("protocol") != PROTOCOL_VERSION:
        _PROTOCOL_OUT.write(
            encode(
                {
                    "type": "error",
                    "code": "protocol",
                    "message": f"unexpected first message {start.get('type')!r}",
                    "detail": "",
                }
            )
        )
        return
    root = Path(os.environ["METAGPT_PROJECT_ROOT"])
    write_metagpt_config(root, start["llm"])
    os.chdir(root)
    asyncio.run(serve(start))


if __name__ == "__main__":
    main()
