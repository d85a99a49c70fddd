"""OutOfProcessEngine: a ``TeamEngine`` whose team runs in a worker process of its own
interpreter (MetaGPT's venv), driven over the line protocol of ``protocol.py``.

Each engine call (plan, re-plan, execute) starts one worker with a fresh temporary project root
(MetaGPT's ``logs/`` and ``workspace/`` land there; removed afterwards), sends it the task, the
run's state and the model settings, and turns what comes back into the same ``TeamEvent``s the
native team emits. What stays on this side, whichever engine runs:

- usage and cost: counted from each reply the worker reports, with the service's price table;
- the budget: every model call is asked for first; once the budget is spent the worker is
  stopped (``budget_exceeded``, as in the native team);
- the sandbox: the worker sends its generated tests here, to ``Sandbox(config.sandbox)``;
- cancellation: cancelling the awaiting task kills the worker's process group (well within 2 s);
- failures: a worker's error, a protocol violation or a worker that died become an
  ``EngineError`` with a code and the real cause (the tail of the worker's stderr).

The worker gets a minimal environment (none of the service's variables, so none of its
secrets but the model API key, which travels in the start message, never on disk).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgx_agent.config import TeamConfig
from mgx_agent.engines.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
    encode,
)
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
    UsageUpdated,
)
from mgx_agent.llm.base import TokenUsage
from mgx_agent.llm.config import LLMConfig
from mgx_agent.llm.pricing import PriceTable
from mgx_agent.metrics import COST_DECIMALS, LLMCall, RunTimings, RunUsage
from mgx_agent.parsing import Plan, Review, SourceFile
from mgx_agent.sandbox import Sandbox
from mgx_agent.team import COMPLEXITY_TUNING, STATE_VERSION, PlanNotReadyError, TeamResult
from mgx_agent.verification import judge_test_run

WORKER_SCRIPT = Path(__file__).with_name("metagpt_worker.py")
# Time a cancelled worker gets to exit on its own before its process group is killed.
_CANCEL_GRACE_SECONDS = 0.5
_STDERR_TAIL_BYTES = 4000
# Variables a worker may inherit: what an interpreter needs to start, nothing of the service.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")


class EngineError(MGXError):
    """An engine call failed; ``code`` is the worker's (``malformed_output``, ``llm_auth``, ...)
    or the adapter's (``engine_unavailable``, ``engine_crashed``, ``engine_protocol``)."""

    code = "engine_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class WorkerCommand:
    """How to start a worker: ``argv`` (interpreter and script) and the engine's name."""

    engine: str
    argv: tuple[str, ...]


def metagpt_command(python: str) -> WorkerCommand:
    return WorkerCommand("metagpt", (python, str(WORKER_SCRIPT)))


class OutOfProcessEngine:
    def __init__(
        self,
        command: WorkerCommand,
        config: TeamConfig,
        llm_config: LLMConfig,
        *,
        prices: PriceTable | None = None,
        run_label: str = "",
        on_event: EventCallback | None = None,
        checkpoint: dict[str, Any] | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.name = command.engine
        self.command = command
        self.config = config
        self.llm_config = llm_config
        self.prices = prices or PriceTable(llm_config.prices)
        self.run_label = run_label
        self.sandbox = sandbox or Sandbox(config.sandbox)
        self.worker_version: str | None = None
        self._on_event = on_event
        self._state: dict[str, Any] = dict(checkpoint or {})
        self._usage = RunUsage.from_dict(self._state.get("usage"))
        self._timings = RunTimings.from_dict(self._state.get("timings"))
        self._process: asyncio.subprocess.Process | None = None

    # The TeamEngine interface

    @property
    def plan(self) -> Plan | None:
        return Plan.model_validate(self._state["plan"]) if self._state.get("plan") else None

    @property
    def state(self) -> dict[str, Any]:
        return {
            **self._state,
            "version": STATE_VERSION,
            "usage": self.usage(),
            "timings": self.timings(),
        }

    def usage(self) -> dict[str, Any]:
        return self._usage.to_dict()

    def timings(self) -> dict[str, float]:
        return self._timings.to_dict()

    async def analyze_and_plan(self, task: str) -> Plan:
        if not task.strip():
            raise ValueError("task must not be empty")
        self._state = {
            "version": STATE_VERSION,
            "task": task.strip(),
            "round": 0,
            "next_phase": "coding",
        }
        await self._call("plan")
        return self._planned()

    async def reject_plan(self, feedback: str) -> Plan:
        if self.plan is None:
            raise PlanNotReadyError("there is no plan to reject; call analyze_and_plan first")
        await self._call("replan", feedback=feedback)
        return self._planned()

    def approve_plan(self) -> None:
        if self.plan is None:
            raise PlanNotReadyError("there is no plan to approve; call analyze_and_plan first")
        self._state["plan_approved"] = True

    async def execute(self) -> TeamResult:
        plan = self.plan
        if plan is None:
            raise PlanNotReadyError("there is no plan; call analyze_and_plan first")
        if not (self._state.get("plan_approved") or self.config.auto_approve_plan):
            raise PlanNotReadyError("the plan is not approved; call approve_plan first")
        self._state["plan_approved"] = True
        if self._state.get("next_phase", "coding") != "done":
            try:
                await self._call("execute")
            except BudgetExceededError as exc:
                self._state.update(
                    outcome="budget_exceeded",
                    stop_reason=exc.message,
                    next_phase="done",
                    revision=None,
                )
        return self._result(plan)

    async def aclose(self) -> None:
        await self._stop_worker()

    # One worker per call

    async def _call(self, action: str, feedback: str | None = None) -> None:
        problem = worker_python_problem(self.command.argv[0])
        if problem is None and not self.llm_config.is_configured:
            problem = (
                "no OpenAI-compatible provider is configured (MGX_LLM_BASE_URL); "
                "the offline demo model runs in the native engine only"
            )
        if problem is not None:
            raise EngineError("engine_unavailable", f"the {self.name} engine cannot run: {problem}")
        root = Path(tempfile.mkdtemp(prefix=f"mgx-{self.name}-"))
        try:
            # The worker writes to this file directly; opening it is a local, instant call.
            with open(root / "worker.stderr", "wb") as stderr:  # noqa: ASYNC230
                try:
                    self._process = await asyncio.create_subprocess_exec(
                        *self.command.argv,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=stderr,
                        cwd=root,
                        env=self._worker_env(root),
                        start_new_session=True,
                        limit=MAX_LINE_BYTES,
                    )
                except OSError as exc:
                    raise EngineError(
                        "engine_unavailable",
                        f"the {self.name} worker could not start ({self.command.argv[0]}): {exc}",
                    ) from None
            try:
                await self._send(self._start_message(action, feedback))
                await self._converse(root)
            except (BrokenPipeError, ConnectionResetError):
                raise self._died(root) from None
        finally:
            await self._stop_worker()
            shutil.rmtree(root, ignore_errors=True)

    async def _converse(self, root: Path) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:
                raise EngineError(
                    "engine_protocol",
                    f"the {self.name} worker sent a line over {MAX_LINE_BYTES} bytes",
                ) from None
            if not line:
                await process.wait()
                raise self._died(root)
            try:
                message = decode(line)
            except ProtocolError as exc:
                raise EngineError(
                    "engine_protocol", f"the {self.name} worker broke the protocol: {exc}"
                ) from None
            kind = message["type"]
            if kind == "hello":
                if message.get("protocol") != PROTOCOL_VERSION:
                    raise EngineError(
                        "engine_protocol",
                        f"the {self.name} worker speaks protocol {message.get('protocol')!r}",
                    )
                self.worker_version = str(message.get("version"))
            elif kind == "event":
                await self._relay(message.get("event") or {})
            elif kind == "request":
                await self._answer(message)
            elif kind == "done":
                self._state = {**message["state"], "usage": self.usage(), "timings": self.timings()}
                return
            elif kind == "error":
                raise EngineError(
                    str(message.get("code") or "engine_error"),
                    str(message.get("message") or "the worker failed"),
                )
            else:
                raise EngineError(
                    "engine_protocol", f"the {self.name} worker sent an unknown message {kind!r}"
                )

    async def _answer(self, request: dict[str, Any]) -> None:
        if request.get("kind") == "model_call":
            self._check_budget()
            await self._send({"type": "reply", "id": request["id"]})
        elif request.get("kind") == "sandbox":
            report = await self.sandbox.run(
                _sources(request.get("files")), _sources(request.get("tests"))
            )
            await self._send({"type": "reply", "id": request["id"], "report": report.to_dict()})
        else:
            raise EngineError(
                "engine_protocol", f"the {self.name} worker asked for {request.get('kind')!r}"
            )

    async def _relay(self, data: dict[str, Any]) -> None:
        """A worker's event as the native team would have emitted it."""
        kind = data.get("type")
        try:
            if kind == "run.phase":
                await self._emit(
                    PhaseStarted(phase=str(data["phase"]), round=int(data.get("round", 0)))
                )
            elif kind == "run.phase_finished":
                seconds = float(data["seconds"])
                self._timings.record(str(data["phase"]), seconds)
                self._state = dict(data["checkpoint"])
                await self._emit(
                    PhaseFinished(phase=str(data["phase"]), seconds=seconds, checkpoint=self.state)
                )
            elif kind == "run.plan_ready":
                await self._emit(PlanReady(plan=Plan.model_validate(data["plan"]).model_dump()))
            elif kind == "agent.message":
                await self._reply_received(data)
            elif kind == "run.log":
                await self._emit(
                    RunLog(
                        level=str(data.get("level", "info")),
                        message=str(data["message"]),
                        role=data.get("role"),
                    )
                )
            elif kind == "artifact.created":
                name = str(data["name"])
                await self._emit(
                    ArtifactProduced(
                        name=name, media_type=str(data["media_type"]), content=str(data["content"])
                    )
                )
            elif kind == "sandbox.result":
                await self._emit(SandboxResult(report=dict(data["report"])))
            else:
                raise EngineError(
                    "engine_protocol", f"the {self.name} worker sent an unknown event {kind!r}"
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                "engine_protocol", f"the {self.name} worker sent a malformed {kind!r} event: {exc}"
            ) from None

    async def _reply_received(self, data: dict[str, Any]) -> None:
        role = str(data["role"])
        call = None
        if data.get("llm"):
            reported = data["llm"]
            model = str(reported.get("model") or self._model_for(role))
            tokens = TokenUsage(
                int(reported.get("prompt_tokens", 0)),
                int(reported.get("completion_tokens", 0)),
                bool(reported.get("estimated", False)),
            )
            cost, known = self.prices.cost(model, tokens)
            if not known and model != self._model_for(role):
                cost, known = self.prices.cost(self._model_for(role), tokens)
            self._usage.record_call(role, tokens, cost, known)
            call = LLMCall(
                model=model,
                prompt_tokens=tokens.prompt_tokens,
                completion_tokens=tokens.completion_tokens,
                cost_usd=round(cost, COST_DECIMALS),
                cost_known=known,
                estimated=tokens.estimated,
            )
        await self._emit(
            AgentMessage(
                role=role,
                action=str(data["action"]),
                content=str(data["content"]),
                llm=call,
                reasoning=data.get("reasoning"),
            )
        )
        await self._emit(UsageUpdated(usage=self.usage()))
        # The budget is spent: stop the worker now rather than at its next call.
        self._check_budget()

    def _check_budget(self) -> None:
        budget = self.config.budget_usd
        spent = self._usage.total.cost_usd
        if budget is not None and spent >= budget:
            raise BudgetExceededError(
                f"run budget of ${budget:.4f} is used up (spent ${spent:.4f}); "
                "raise budget_usd to let the run make more LLM calls"
            )

    # Plumbing

    def _role_models(self) -> dict[str, str]:
        return {**self.llm_config.role_models, **self.config.role_models()}

    def _model_for(self, role: str) -> str:
        return self._role_models().get(role, self.llm_config.model)

    def _start_message(self, action: str, feedback: str | None) -> dict[str, Any]:
        plan = self.plan
        revisions, tests = COMPLEXITY_TUNING.get(
            plan.complexity if plan else "M", COMPLEXITY_TUNING["M"]
        )
        api_key = self.llm_config.api_key.get_secret_value() if self.llm_config.api_key else ""
        return {
            "type": "start",
            "protocol": PROTOCOL_VERSION,
            "action": action,
            "task": self._state.get("task", ""),
            "feedback": feedback,
            "auto_approve": self.config.auto_approve_plan,
            "state": self._state,
            "llm": {
                "base_url": self.llm_config.effective_base_url,
                "api_key": api_key,
                "model": self.llm_config.model,
                "role_models": self._role_models(),
                "temperature": self.llm_config.temperature,
                "max_tokens": self.llm_config.max_tokens,
                "timeout_seconds": self.llm_config.timeout_seconds,
                "max_retries": self.llm_config.max_retries,
                "run_label": self.run_label,
            },
            "limits": {
                "revision_rounds": min(revisions, self.config.revision_limit()),
                "tests": tests,
                "require_passing_tests": self.config.require_passing_tests,
            },
        }

    def _worker_env(self, root: Path) -> dict[str, str]:
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env.update(
            METAGPT_PROJECT_ROOT=str(root),
            HOME=str(root),
            TMPDIR=str(root),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONIOENCODING="utf-8",
        )
        return env

    async def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.write(encode(message))
        await process.stdin.drain()

    async def _stop_worker(self) -> None:
        """Ask the worker to stop, then kill its whole process group; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            try:
                assert process.stdin is not None
                process.stdin.write(encode({"type": "cancel"}))
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), _CANCEL_GRACE_SECONDS)
            except TimeoutError:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await process.wait()

    def _died(self, root: Path) -> EngineError:
        process = self._process
        code = process.returncode if process is not None else None
        try:
            with open(root / "worker.stderr", "rb") as stderr:
                stderr.seek(0, os.SEEK_END)
                stderr.seek(max(0, stderr.tell() - _STDERR_TAIL_BYTES))
                tail = stderr.read().decode("utf-8", "replace").strip()
        except OSError:
            tail = ""
        exited = "exited" if code is None else f"exited with status {code}"
        return EngineError(
            "engine_crashed",
            f"the {self.name} worker {exited} before finishing: {tail or 'no output'}",
        )

    async def _emit(self, event: TeamEvent) -> None:
        if self._on_event is not None:
            await self._on_event(event)

    def _planned(self) -> Plan:
        plan = self.plan
        if plan is None:
            raise EngineError(
                "engine_protocol", f"the {self.name} worker finished planning without a plan"
            )
        return plan

    def _result(self, plan: Plan) -> TeamResult:
        state = self._state
        report = state.get("sandbox_report")
        verdict = judge_test_run(report)
        outcome = state.get("outcome") or "stalled"
        reason = state.get("stop_reason")
        if outcome == "approved" and reason is None:
            reason = verdict.unproven_reason(self.config)
        return TeamResult(
            outcome=outcome,
            plan=plan,
            complexity=plan.complexity,
            files=_sources(state.get("files")),
            tests=_sources(state.get("tests")),
            sandbox_report=report,
            review=Review.from_dict(state["review"]) if state.get("review") else None,
            rounds=state.get("round", 0) + 1 if state.get("review") else state.get("round", 0),
            usage=self.usage(),
            timings=self.timings(),
            demo=False,
            stop_reason=reason,
            verification={
                "tests": verdict.tests,
                "required": self.config.require_passing_tests,
                "detail": verdict.detail,
            },
        )


def _sources(items: Sequence[dict[str, Any]] | None) -> list[SourceFile]:
    return [SourceFile(str(item["path"]), str(item["content"])) for item in items or []]


def worker_python_problem(python: str | None) -> str | None:
    """Why ``python`` cannot run a worker, or None when it is an executable file."""
    if not python:
        return "MGX_METAGPT_PYTHON is not set (scripts/install-metagpt.sh prints the value)"
    path = shutil.which(python) or python
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"MGX_METAGPT_PYTHON={python} is not an executable interpreter"
    return None


async def probe_worker(command: WorkerCommand, timeout: float = 60.0) -> dict[str, Any]:
    """Run the worker's ``--check`` (imports MetaGPT's team modules): its version, or why not."""
    problem = worker_python_problem(command.argv[0])
    if problem:
        return {"available": False, "reason": problem}
    root = tempfile.mkdtemp(prefix=f"mgx-{command.engine}-check-")
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(METAGPT_PROJECT_ROOT=root, HOME=root, PYTHONDONTWRITEBYTECODE="1")
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            "--check",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=root,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError) as stopped:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            if isinstance(stopped, asyncio.CancelledError):
                raise
            return {
                "available": False,
                "reason": f"{command.argv[0]} --check did not answer within {timeout:.0f} s",
            }
        if process.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            return {
                "available": False,
                "reason": f"the worker check failed ({process.returncode}): {last[0][:500]}",
            }
        found = json.loads(out.decode().strip().splitlines()[-1])
        return {
            "available": True,
            "version": found.get("version"),
            "python": found.get("python"),
            "interpreter": command.argv[0],
        }
    except (OSError, ValueError, IndexError) as exc:
        return {"available": False, "reason": f"the worker check failed: {exc}"}
    finally:
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["EngineError", "OutOfProcessEngine", "WorkerCommand", "metagpt_command", "probe_worker"]
