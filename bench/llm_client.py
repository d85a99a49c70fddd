"""CPU per LLM call of the project's client against the official ``openai`` SDK and a bare
aiohttp loop, at several concurrency levels, in one run.

    python bench/llm_client.py [--levels 1,10,100] [--calls 2000] [--repeats 3]

The fake LLM server (``python -m mgx_agent.testing.fake_llm``, no latency) runs in its own
process, so the CPU measured here (this process's user+system time over the calls, divided by
the calls) is the client's alone. Each client makes ``--calls`` non-streamed Chat Completions
calls per level (a tenth of that at concurrency 1) after a warm-up, ``--repeats`` times; the
table shows the median. Clients:

- ``project``: ``OpenAICompatibleClient`` as the service uses it (aiohttp transport);
- ``project/httpx``: the same client over an ``httpx.AsyncClient`` (its transport before);
- ``openai``: ``openai.AsyncOpenAI`` (requirements-dev.txt; the service does not use it);
- ``bare aiohttp``: one session, post, read the JSON, take the content: the floor.

Targets at the highest level: the project's client <= 0.3x the openai SDK's CPU per call, and
within 2x of the bare loop. The machine is shared, so compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from mgx_agent.llm import CallContext, LLMConfig, OpenAICompatibleClient  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are Alex, an engineer."},
    {"role": "user", "content": "Write fizzbuzz(n) in Python."},
]
MODEL = "gpt-4o-mini"
CONTEXT = CallContext(role="Engineer", action="WriteCode", run_label="bench")
SDK_TARGET, FLOOR_TARGET = 0.3, 2.0

Call = Callable[[], Awaitable[str]]


def start_fake_llm() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mgx_agent.testing.fake_llm"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"the fake LLM server did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


async def cpu_per_call(call: Call, calls: int, concurrency: int) -> float:
    """Milliseconds of this process's CPU per call, ``calls`` calls ``concurrency`` at a time."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            content = await call()
            assert content, "an empty reply"

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) * 1000 / calls


async def clients(base_url: str) -> tuple[dict[str, Call], Callable[[], Awaitable[None]]]:
    import openai

    config = LLMConfig(_env_file=None, base_url=base_url, api_key="bench-key", model=MODEL, max_retries=0)
    project = OpenAICompatibleClient(config)
    pooled = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))
    over_httpx = OpenAICompatibleClient(config, http_client=pooled)
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="bench-key", max_retries=0)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    url = f"{base_url}/chat/completions"
    headers = {"Authorization": "Bearer bench-key"}

    async def call_project() -> str:
        return (await project.complete(MESSAGES, model=MODEL, context=CONTEXT)).content

    async def call_project_httpx() -> str:
        return (await over_httpx.complete(MESSAGES, model=MODEL, context=CONTEXT)).content

    async def call_sdk() -> str:
        reply = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        return reply.choices[0].message.content or ""

    async def call_bare() -> str:
        async with session.post(url, json={"model": MODEL, "messages": MESSAGES}, headers=headers) as response:
            body = await response.json()
        return body["choices"][0]["message"]["content"]

    async def close() -> None:
        await project.aclose()
        await pooled.aclose()
        await sdk.close()
        await session.close()

    return {
        "project": call_project,
        "project/httpx": call_project_httpx,
        "openai": call_sdk,
        "bare aiohttp": call_bare,
    }, close


async def measure(base_url: str, levels: list[int], calls: int, repeats: int) -> dict[int, dict[str, float]]:
    table, close = await clients(base_url)
    results: dict[int, dict[str, float]] = {}
    try:
        for level in levels:
            count = max(calls // 10, 50) if level == 1 else calls
            samples: dict[str, list[float]] = {name: [] for name in table}
            for _ in range(repeats):
                for name, call in table.items():  # interleaved, so load changes hit all alike
                    await cpu_per_call(call, min(count, 2 * level + 20), level)  # warm-up
                    samples[name].append(await cpu_per_call(call, count, level))
            results[level] = {name: statistics.median(values) for name, values in samples.items()}
            print(f"  concurrency {level}: done", file=sys.stderr)
    finally:
        await close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,10,100")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    server, base_url = start_fake_llm()
    try:
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        results = asyncio.run(measure(base_url, levels, args.calls, args.repeats))
    finally:
        server.terminate()
        server.wait(10)
    names = list(next(iter(results.values())))
    print(f"\nclient CPU ms per call (median of {args.repeats})")
    print(f"{'concurrency':>11} " + " ".join(f"{name:>13}" for name in names) + f" {'vs openai':>10} {'vs bare':>8}")
    for level, row in results.items():
        print(
            f"{level:>11} " + " ".join(f"{row[name]:>13.3f}" for name in names)
            + f" {row['project'] / row['openai']:>9.2f}x {row['project'] / row['bare aiohttp']:>7.2f}x"
        )
    top = results[max(results)]
    versus_sdk, versus_floor = top["project"] / top["openai"], top["project"] / top["bare aiohttp"]
    print()
    print(f"target project <= {SDK_TARGET}x openai at concurrency {max(results)}: "
          f"{'met' if versus_sdk <= SDK_TARGET else 'NOT met'} ({versus_sdk:.2f}x)")
    print(f"target project <= {FLOOR_TARGET}x bare aiohttp at concurrency {max(results)}: "
          f"{'met' if versus_floor <= FLOOR_TARGET else 'NOT met'} ({versus_floor:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
