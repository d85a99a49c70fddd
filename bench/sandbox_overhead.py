"""What one sandboxed test run costs: bubblewrap against unsafe-subprocess.

Runs the same small code + tests through ``Sandbox.run`` with each backend, interleaved (so a
busy machine slows both alike), and prints the median and p95 wall time of each and the
difference. Target: bubblewrap adds under 100 ms per run (median).

    python bench/sandbox_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mgx_agent.config import SandboxConfig  # noqa: E402
from mgx_agent.parsing import SourceFile  # noqa: E402
from mgx_agent.sandbox import Sandbox, sandbox_status  # noqa: E402

TARGET_MS = 100
CODE = [SourceFile("durations.py", "def seconds(h, m, s):\n    return h * 3600 + m * 60 + s\n")]
TESTS = [
    SourceFile(
        "test_durations.py",
        "from durations import seconds\n\n"
        "def test_hours():\n    assert seconds(1, 0, 0) == 3600\n\n"
        "def test_mixed():\n    assert seconds(0, 2, 5) == 125\n",
    )
]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def measure(runs: int) -> dict[str, list[float]]:
    sandboxes = {
        "bubblewrap": Sandbox(SandboxConfig(mode="bwrap")),
        "unsafe-subprocess": Sandbox(SandboxConfig(mode="unsafe-subprocess")),
    }
    timings: dict[str, list[float]] = {name: [] for name in sandboxes}
    for name, sandbox in sandboxes.items():  # warm-up: the probe, imports, page cache
        report = await sandbox.run(CODE, TESTS)
        assert report.status == "passed", (name, report.output_tail)
    for _ in range(runs):
        for name, sandbox in sandboxes.items():
            started = time.perf_counter()
            report = await sandbox.run(CODE, TESTS)
            timings[name].append((time.perf_counter() - started) * 1000)
            assert report.status == "passed", (name, report.output_tail)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    status = sandbox_status(SandboxConfig(mode="bwrap"))
    if status["backend"] != "bubblewrap":
        sys.exit(f"bubblewrap is not available here: {status.get('reason')}")
    print(f"sandbox overhead: {args.runs} runs per backend, interleaved; bwrap {status['bwrap']}")
    print(f"isolated: {status['isolated']}; limits: {status['limits']}")
    timings = asyncio.run(measure(args.runs))
    print(f"\n{'backend':<20}{'median ms':>12}{'p95 ms':>10}")
    for name, values in timings.items():
        print(f"{name:<20}{statistics.median(values):>12.1f}{p95(values):>10.1f}")
    added = statistics.median(timings["bubblewrap"]) - statistics.median(timings["unsafe-subprocess"])
    added_p95 = p95(timings["bubblewrap"]) - p95(timings["unsafe-subprocess"])
    print(f"{'bubblewrap adds':<20}{added:>12.1f}{added_p95:>10.1f}")
    verdict = "met" if added < TARGET_MS else "NOT met"
    print(f"\ntarget: bubblewrap adds < {TARGET_MS} ms per run (median): {verdict}")


if __name__ == "__main__":
    main()
