"""Native vs metagpt engine on the same fake LLM server: one run, and N concurrent runs.

Each run plans, is approved and executes (code, tests, review) through the ``TeamEngine``
interface, as the service's run executor drives it; the sandbox is off so that what is
measured is the engine. Every scenario runs in a fresh child process of this script, and the
fake server in another, so the figures are the engine's alone:

- wall: seconds from the first run's start to the last run's end;
- CPU per model call: user+system CPU of the scenario's process and everything it started
  (the metagpt workers), divided by the model calls the runs made;
- peak memory: the largest sum of resident memory of the scenario's process tree, sampled
  every 20 ms (the service side plus every live worker).

    python bench/engines.py [--metagpt-python PATH] [--concurrency 10] [--latency-ms 0]

Without --metagpt-python (or MGX_METAGPT_PYTHON) only the native engine is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = (
    "fizzbuzz up to n",
    "parse ISO-8601 durations",
    "slugify a title",
    "Build a recipe planner",
)
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


async def _one_run(engine_name: str, base_url: str, metagpt_python: str, index: int) -> int:
    from mgx_agent.config import SandboxConfig, TeamConfig
    from mgx_agent.engines.native import NativeEngine
    from mgx_agent.engines.out_of_process import OutOfProcessEngine, metagpt_command
    from mgx_agent.llm import LLMConfig, build_llm_client
    from mgx_agent.team import build_team_session

    config = TeamConfig(enable_caching=False, sandbox=SandboxConfig(mode="off"), engine=engine_name)
    llm_config = LLMConfig(
        _env_file=None, base_url=base_url, api_key="bench", model="gpt-4o-mini", max_retries=0
    )
    if engine_name == "native":
        client = build_llm_client(llm_config)
        session = build_team_session(
            config, client, default_model="gpt-4o-mini", run_label=f"bench-{index}"
        )
        engine = NativeEngine(config, session)
    else:
        client = None
        engine = OutOfProcessEngine(
            metagpt_command(metagpt_python), config, llm_config, run_label=f"bench-{index}"
        )
    try:
        await engine.analyze_and_plan(TASKS[index % len(TASKS)])
        engine.approve_plan()
        result = await engine.execute()
        return int(result.usage["total"]["llm_calls"])
    finally:
        await engine.aclose()
        if client is not None:
            await client.aclose()


async def _scenario(
    engine_name: str, runs: int, base_url: str, metagpt_python: str
) -> dict[str, float]:
    started = time.perf_counter()
    calls = await asyncio.gather(
        *(_one_run(engine_name, base_url, metagpt_python, i) for i in range(runs))
    )
    return {"wall": time.perf_counter() - started, "calls": sum(calls)}


def measure_in_this_process(
    engine_name: str, runs: int, base_url: str, metagpt_python: str
) -> None:
    """The child side: run the scenario, print its figures as one JSON line. The service's own
    imports are done before the clock starts (a service pays them once, not per run); a metagpt
    worker's imports are counted, since every engine call starts a worker."""
    import mgx_agent.engines.native
    import mgx_agent.engines.out_of_process  # noqa: F401

    before = _cpu_seconds()
    figures = asyncio.run(_scenario(engine_name, runs, base_url, metagpt_python))
    print(json.dumps({**figures, "cpu": _cpu_seconds() - before}), flush=True)


def _cpu_seconds() -> float:
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * _PAGE_KB
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_scenario(
    engine_name: str, runs: int, base_url: str, metagpt_python: str
) -> dict[str, float]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--measure", engine_name, str(runs), base_url, metagpt_python],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(child.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(
            f"the {engine_name} scenario with {runs} run(s) failed ({child.returncode})"
        )
    figures = json.loads(out.strip().splitlines()[-1])
    return {**figures, "peak_mb": peak[0] / 1024}


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        engine_name, runs, base_url, metagpt_python = sys.argv[2:6]
        measure_in_this_process(engine_name, int(runs), base_url, metagpt_python)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metagpt-python", default=os.environ.get("MGX_METAGPT_PYTHON", ""))
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    fake = subprocess.Popen(
        [sys.executable, "-m", "mgx_agent.testing.fake_llm", "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip().rsplit(" ", 1)[-1]
        engines = ["native"] + (["metagpt"] if args.metagpt_python else [])
        rows = []
        for runs in (1, args.concurrency):
            for engine_name in engines:
                figures = run_scenario(engine_name, runs, base_url, args.metagpt_python)
                rows.append((engine_name, runs, figures))
    finally:
        fake.terminate()
        fake.wait()

    print(
        f"{'engine':<8} {'runs':>4} {'calls':>5} {'wall s':>8} {'CPU ms/call':>12} {'peak MB':>8}"
    )
    for engine_name, runs, figures in rows:
        per_call = 1000 * figures["cpu"] / max(1, figures["calls"])
        print(
            f"{engine_name:<8} {runs:>4} {int(figures['calls']):>5} {figures['wall']:>8.2f} "
            f"{per_call:>12.1f} {figures['peak_mb']:>8.0f}"
        )
    if not args.metagpt_python:
        print(
            "metagpt not measured: pass --metagpt-python or set MGX_METAGPT_PYTHON (scripts/install-metagpt.sh)"
        )


if __name__ == "__main__":
    main()
