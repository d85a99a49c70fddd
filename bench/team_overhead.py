"""Engine overhead per LLM call: how much time the team adds on top of waiting for the model.

Runs whole tasks (plan + execute, sandbox off, no cache) against the fake LLM server over real
HTTP at a few simulated latencies and prints a table. Overhead per call is
(run wall time - time spent awaiting the LLM client) / LLM calls: prompt building, parsing,
events and bookkeeping, excluding the HTTP round trip itself. Target: < 2 ms per call.

    python bench/team_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mgx_agent.config import SandboxConfig, TeamConfig  # noqa: E402
from mgx_agent.events import TeamEvent  # noqa: E402
from mgx_agent.llm import LLMConfig, OpenAICompatibleClient  # noqa: E402
from mgx_agent.llm.base import (  # noqa: E402
    CallContext,
    ChatMessage,
    DeltaCallback,
    LLMClient,
    LLMResponse,
)
from mgx_agent.team import MGXStyleTeam, build_team_session  # noqa: E402
from mgx_agent.testing.fake_llm import FakeLLMServer  # noqa: E402

LATENCIES_MS = (0, 50)
TASKS = (
    "fizzbuzz up to n",
    "parse ISO-8601 durations",
    "slugify a title",
    "Build a recipe planner",
)
TARGET_MS = 2.0


class TimedClient:
    """Delegates to a real client and adds up the time spent awaiting it."""

    def __init__(self, inner: LLMClient) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.accepts_sampling_params = getattr(inner, "accepts_sampling_params", False)
        self.seconds = 0.0
        self.calls = 0

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        context: CallContext,
        on_delta: DeltaCallback | None = None,
        **params: object,
    ) -> LLMResponse:
        started = time.perf_counter()
        try:
            return await self.inner.complete(
                messages, model=model, context=context, on_delta=on_delta, **params
            )
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def ignore(event: TeamEvent) -> None:
    event.to_dict()  # serialising is part of what a real subscriber costs


async def one_run(client: TimedClient, task: str, label: str) -> float:
    config = TeamConfig(
        auto_approve_plan=True, enable_caching=False, sandbox=SandboxConfig(mode="off")
    )
    session = build_team_session(config, client, default_model="gpt-4o-mini", run_label=label)
    team = MGXStyleTeam(config, session, on_event=ignore)
    started = time.perf_counter()
    await team.analyze_and_plan(task)
    result = await team.execute()
    if result.outcome != "approved":
        raise RuntimeError(f"benchmark run ended {result.outcome}")
    return time.perf_counter() - started


async def measure(server: FakeLLMServer, latency_ms: int, runs: int) -> dict[str, float]:
    server.reset()
    server.latency_seconds = latency_ms / 1000
    inner = OpenAICompatibleClient(LLMConfig(base_url=server.base_url, max_retries=0))
    client = TimedClient(inner)
    try:
        await one_run(client, TASKS[0], "warmup")  # connection setup and imports
        client.seconds, client.calls = 0.0, 0
        walls = [await one_run(client, TASKS[n % len(TASKS)], f"bench-{n}") for n in range(runs)]
    finally:
        await client.aclose()
    wall = sum(walls)
    return {
        "latency_ms": latency_ms,
        "run_wall_s": statistics.mean(walls),
        "calls_per_run": client.calls / runs,
        "llm_wait_s": client.seconds / runs,
        "overhead_ms_per_call": (wall - client.seconds) / client.calls * 1000,
    }


async def main(runs: int) -> int:
    async with FakeLLMServer() as server:
        rows = [await measure(server, latency, runs) for latency in LATENCIES_MS]
    header = ("latency ms", "run wall s", "calls/run", "LLM wait s", "overhead ms/call")
    print(f"{header[0]:>10} {header[1]:>11} {header[2]:>10} {header[3]:>11} {header[4]:>17}")
    for row in rows:
        print(
            f"{row['latency_ms']:>10} {row['run_wall_s']:>11.3f} {row['calls_per_run']:>10.1f} "
            f"{row['llm_wait_s']:>11.3f} {row['overhead_ms_per_call']:>17.3f}"
        )
    worst = max(row["overhead_ms_per_call"] for row in rows)
    verdict = "meets" if worst < TARGET_MS else "MISSES"
    print(
        f"\nworst engine overhead {worst:.3f} ms per call: {verdict} the {TARGET_MS} ms target "
        f"({runs} runs each)"
    )
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
