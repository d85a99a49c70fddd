"""The command line: ``python -m mgx_agent "task"`` runs one team in the terminal.

Plan, ask for approval on stdin (or ``--yes``; answering "n" with feedback re-plans), execute
with one progress line per event, write the artifacts to ``--output``, print usage, cost and
the outcome. Exit codes: 0 approved, 1 finished without approval, 2 error, 3 plan rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError
from pydantic_settings import SettingsError as PydanticSettingsError

from mgx_agent.cache import build_response_cache
from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.errors import MGXError
from mgx_agent.events import TeamEvent
from mgx_agent.llm import LLMConfig, build_llm_client, build_price_table
from mgx_agent.llm.demo import DEMO_MODEL
from mgx_agent.parsing import APPROVED, CHANGES_REQUIRED, Plan, Review
from mgx_agent.team import HumanReviewer, MGXStyleTeam, TeamResult, build_team_session

EXIT_APPROVED = 0
EXIT_NOT_APPROVED = 1
EXIT_ERROR = 2
EXIT_REJECTED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mgx_agent",
        description="Run an MGX-style team (Mike, Alex, Bob, Charlie) on one task.",
    )
    parser.add_argument("task", help="what to build, in plain words")
    parser.add_argument("--yes", "-y", action="store_true", help="approve the plan without asking")
    parser.add_argument(
        "--output", "-o", type=Path,
        help="artifact directory (default: $XDG_DATA_HOME/mgx-agent/runs/<slug>-<time>, "
        "i.e. ~/.local/share/mgx-agent/runs/...)",
    )
    parser.add_argument("--max-rounds", type=int, help="total review rounds (1-20)")
    parser.add_argument("--max-revision-rounds", type=int, help="revision rounds (0-5)")
    parser.add_argument("--budget-usd", type=float, help="stop the run when this much is spent")
    parser.add_argument(
        "--sandbox", choices=["auto", "bwrap", "unsafe-subprocess", "off"], help="override MGX_SANDBOX"
    )
    parser.add_argument("--stream", action="store_true", help="show live model output")
    parser.add_argument(
        "--human-review", action="store_true", help="have the last word on each of Charlie's reviews"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parser


def default_output_dir(task: str) -> Path:
    """Where artifacts go without ``--output``: the user's data directory, never the working
    directory (which is often a repository), one new folder per run."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return data_home / "mgx-agent" / "runs" / f"{task_slug(task)}-{stamp}"


def task_slug(task: str) -> str:
    slug = "-".join(re.findall(r"[a-z0-9]+", task.lower()))[:48].strip("-")
    return slug or "task"


def team_config_from_args(args: argparse.Namespace) -> TeamConfig:
    values: dict[str, object] = {"stream_deltas": args.stream, "human_reviewer": args.human_review}
    for option in ("max_rounds", "max_revision_rounds", "budget_usd"):
        if getattr(args, option) is not None:
            values[option] = getattr(args, option)
    if args.max_revision_rounds is not None and args.max_rounds is None:
        values["max_rounds"] = max(TeamConfig().max_rounds, args.max_revision_rounds + 1)
    if args.sandbox:
        values["sandbox"] = SandboxConfig(mode=args.sandbox)
    return TeamConfig.model_validate(values)


class ProgressPrinter:
    """One line per event; live deltas are written inline when streaming is on."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def __call__(self, event: TeamEvent) -> None:
        data = event.to_dict()
        kind = data["type"]
        if kind == "agent.delta":
            self.out.write(data["text"])
            self.out.flush()
            return
        line = {
            # Rounds count from 0 in events; people count from 1.
            "run.phase": lambda: f"[phase] {data['phase']} (round {data['round'] + 1})",
            "run.phase_finished": lambda: f"[done]  {data['phase']} in {data['seconds']:.2f} s",
            "agent.message": lambda: (
                f"[{data['role']}] {data['action']}: {len(data['content'])} chars"
            ),
            "artifact.created": lambda: f"[file]  {data['name']} ({len(data['content'])} bytes)",
            "sandbox.result": lambda: _sandbox_line(data["report"]),
            "run.plan_ready": lambda: "[plan]  ready",
            "run.log": lambda: f"[{data['level']}] {data['message']}",
        }.get(kind)
        if line is not None:
            print(line(), file=self.out, flush=True)


def _sandbox_line(report: dict) -> str:
    if report["status"] in ("skipped", "unavailable"):
        return f"[tests] not run: {report.get('reason') or report.get('output_tail', '')}"
    return (
        f"[tests] {report['status']}: {report['passed']} passed, {report['failed']} failed, "
        f"{report['errors']} errors (isolation: {report.get('isolation') or 'none'})"
    )


def write_artifacts(result: TeamResult, output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    root = output.resolve()
    contents: dict[str, str] = {"plan.json": json.dumps(result.plan.model_dump(), indent=2) + "\n"}
    for source in [*result.files, *result.tests]:
        contents[source.path] = source.content
    if result.review is not None:
        contents["review.md"] = result.review.to_markdown()
    if result.sandbox_report is not None:
        contents["sandbox-report.json"] = json.dumps(result.sandbox_report, indent=2) + "\n"
    summary = {k: v for k, v in result.to_dict().items() if k not in ("files", "tests")}
    contents["result.json"] = json.dumps(summary, indent=2) + "\n"
    written = []
    for name, content in contents.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise MGXError(f"refusing to write artifact outside {root}: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        written.append(target)
    return written


async def _ask(prompt: str, out: TextIO) -> str | None:
    # The question goes to ``out`` (stderr under --json) so stdout stays machine-readable.
    out.write(prompt)
    out.flush()
    try:
        return (await asyncio.to_thread(input)).strip()
    except EOFError:
        return None


async def _approve_interactively(team: MGXStyleTeam, plan: Plan, out: TextIO) -> bool:
    while True:
        print(plan.to_markdown(), file=out, flush=True)
        answer = await _ask("Approve this plan? [y/n] ", out)
        if answer is None:
            print("No answer on stdin; use --yes to approve without asking.", file=out)
            return False
        if answer.lower() in ("y", "yes"):
            team.approve_plan()
            return True
        feedback = await _ask("Feedback for Mike (empty to stop): ", out)
        if not feedback:
            return False
        print("Re-planning with your feedback...", file=out, flush=True)
        plan = await team.reject_plan(feedback)


def stdin_reviewer(out: TextIO) -> HumanReviewer:
    """Ask the person at the terminal to confirm or overrule Charlie's review."""

    async def review(charlie: Review, context: dict) -> Review:
        print(charlie.to_markdown(), file=out, flush=True)
        if context.get("sandbox_report"):
            print(_sandbox_line(context["sandbox_report"]), file=out, flush=True)
        answer = await _ask(
            f"Charlie says {charlie.verdict}. Enter (or y) to agree, 'a' to approve, or type what must change: ",
            out,
        )
        if not answer or answer.lower() in ("y", "yes"):
            return charlie
        if answer.lower() in ("a", "approve", "approved"):
            return Review(APPROVED, ("Approved by a human reviewer.",), "VERDICT: APPROVED (human)")
        return Review(CHANGES_REQUIRED, (answer,), f"VERDICT: CHANGES_REQUIRED (human)\n- {answer}")

    return review


async def run(args: argparse.Namespace) -> int:
    # With --json, stdout carries only the result; everything human-readable goes to stderr.
    out = sys.stderr if args.json else sys.stdout
    try:
        llm_config = LLMConfig()
        team_config = team_config_from_args(args)
    except ValidationError as exc:
        print(f"mgx_agent: invalid configuration: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except PydanticSettingsError as exc:  # a JSON variable (MGX_LLM_ROLE_MODELS, ...) that does not decode
        field = re.search(r'field "([^"]+)"', str(exc))
        variable = f"MGX_LLM_{field[1].upper()}" if field else "MGX_LLM_*"
        print(f"mgx_agent: invalid configuration: {variable}: is not valid JSON ({exc.__cause__})", file=sys.stderr)
        return EXIT_ERROR
    client = build_llm_client(llm_config)
    demo = client.provider == "demo"
    model = DEMO_MODEL if demo else llm_config.model
    cache_backend = team_config.cache_backend if team_config.enable_caching else "none"
    cache = build_response_cache(
        cache_backend,
        max_entries=team_config.cache_max_entries,
        ttl_seconds=team_config.cache_ttl_seconds,
        redis_url=os.environ.get("REDIS_URL"),
    )
    session = build_team_session(
        team_config,
        client,
        default_model=model,
        role_models=llm_config.role_models,
        cache=cache,
        prices=build_price_table(llm_config),
        run_label=f"cli-{task_slug(args.task)}",
        temperature=llm_config.temperature,
        max_tokens=llm_config.max_tokens,
    )
    team = MGXStyleTeam(
        team_config,
        session,
        on_event=ProgressPrinter(out),
        human_review=stdin_reviewer(out) if args.human_review else None,
    )
    print(f"Model: {model} ({'offline demo model' if demo else client.provider})", file=out)
    try:
        plan = await team.analyze_and_plan(args.task)
        if args.yes:
            print(plan.to_markdown(), file=out, flush=True)
            team.approve_plan()
        elif not await _approve_interactively(team, plan, out):
            print("Plan rejected; nothing was built.", file=out)
            return EXIT_REJECTED
        result = await team.execute()
    except MGXError as exc:
        print(f"Error ({exc.code}): {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await client.aclose()
        await cache.aclose()
    output = args.output or default_output_dir(args.task)
    written = write_artifacts(result, output)
    total = result.usage["total"]
    print(
        f"Outcome: {result.outcome}"
        + (" (written by the offline demo model)" if demo else "")
        + (f" ({result.stop_reason})" if result.stop_reason else "")
        + f" after {result.rounds} round(s)\n"
        f"Usage: {total['llm_calls']} LLM calls, {total['prompt_tokens']} prompt + "
        f"{total['completion_tokens']} completion tokens, {total['cache_hits']} cache hits\n"
        f"Cost: ${total['cost_usd']:.4f}"
        + ("" if total["cost_known"] else " (some prices unknown)")
        + f"\nArtifacts: {len(written)} files in {output}",
        file=out,
        flush=True,
    )
    if args.json:
        print(json.dumps({**result.to_dict(), "output_dir": str(output)}, indent=2))
    return EXIT_APPROVED if result.approved else EXIT_NOT_APPROVED


def _one_line(error: ValidationError) -> str:
    """Each problem as ``field: message``; LLM settings are named by their variable."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if error.title == "LLMConfig":
            location = "MGX_LLM_" + location.upper()
        parts.append(f"{location}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
