"""Run throughput of one API process: how long N concurrent runs take end to end, how long they
wait in the queue, and how much memory the server needs; plus how fast an idle worker picks up
the next queued run.

The API runs as a uvicorn subprocess on a throw-away PostgreSQL database (``--sqlite`` for an
SQLite file instead); the fake LLM server (100 ms per call by default) runs in a process of its own.
Each level gets a fresh server (so its peak RSS is its own) and one unmeasured warm-up run.

    python bench/runs_throughput.py [--sqlite] [--levels 1,10,100] [--latency-ms 100]

Figures come from the runs' own timestamps: wall = first created_at -> last finished_at,
queue wait = created_at -> started_at (the first claim), pick-up = run 1 finished_at -> run 2
started_at with one worker. CPU ms/run is the server's user+system CPU time over the measured
runs: creating them (``POST /runs``) and executing them. The bench waits by counting active runs
in the database itself, so its waiting costs the server nothing.
Statements and transactions per run are the server's own counts of what the runs' executions
sent (``mgx_db_statements`` / ``mgx_db_transactions`` with ``source="run"``, read from
/metrics; the claim, which writes up to 16 runs in one transaction, and the requests are not in them).
A last level (``--sandbox-runs``, 10 by default) runs with ``MGX_SANDBOX=bwrap``, so the
sandbox's cost per run shows beside the same runs without it (the server process's CPU only;
the sandboxed processes are its children and not counted).
The floor (``bench/run_floor.py``, PostgreSQL only) runs the largest level's number of runs in
its own process on the same database and fake server: the same model calls through a bare
aiohttp session and the same rows (one finished service run's events and artifacts, read back
from the database) with raw asyncpg, one transaction for the creation, per reply and per status
change; the service's CPU per run is printed over the floor's.
Targets: 100 concurrent runs within 3x the wall time of one run; pick-up < 100 ms; at most one
transaction per model reply plus one per status change; service CPU per run <= 2x the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.databases import PostgresTestDatabase  # noqa: E402
from mgx_agent.testing.fake_llm import FakeLLMProcess  # noqa: E402
from tests.e2e.conftest import ApiServer, service_env  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402

ACTIVE = ("queued", "planning", "awaiting_approval", "running")
POLL_SECONDS = 0.1
SCALING_TARGET = 3.0  # N concurrent runs finish within this many single-run wall times
PICKUP_TARGET_MS = 100.0
PICKUP_PAIRS = 3
FLOOR_TARGET = 2.0
# A demo run with its plan approved by the task: analyse, plan, code, tests, review; and the
# status changes its execution makes (planning -> running -> completed; the claim's is not its).
MODEL_REPLIES_PER_RUN = 5
STATUS_CHANGES_PER_RUN = 2
RUN_TIMEOUT_SECONDS = 60.0


@dataclass
class LevelResult:
    runs: int
    wall_seconds: float
    queue_p50_ms: float
    queue_p95_ms: float
    peak_rss_mib: float | None
    cpu_ms_per_run: float
    failed: int
    statements_per_run: float
    transactions_per_run: float
    sandboxed: bool = False
    sample_run: str | None = None  # a completed run, whose rows the floor writes again

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.wall_seconds if self.wall_seconds else float("inf")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported value really happened)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def at(run: dict[str, Any], field: str) -> float:
    return datetime.fromisoformat(run[field]).timestamp()


async def create_tasks(client: httpx.AsyncClient, count: int, label: str) -> list[str]:
    async def one(index: int) -> str:
        body = {
            "title": f"{label} #{index}: slugify titles",
            "description": "unicode aware slugs",
            "config": {"auto_approve_plan": True},
        }
        response = await client.post("/tasks/", json=body)
        response.raise_for_status()
        return response.json()["id"]

    ids = []
    for start in range(0, count, 20):  # a few at a time: task creation is not what is measured
        ids += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
    return ids


async def start_runs(client: httpx.AsyncClient, task_ids: list[str]) -> list[str]:
    async def one(task_id: str) -> str:
        response = await client.post("/runs/", json={"task_id": task_id})
        response.raise_for_status()
        return response.json()["id"]

    return list(await asyncio.gather(*(one(task_id) for task_id in task_ids)))


class QueueWatch:
    """Counts the active runs straight from the database, so waiting for the runs to finish
    costs the server being measured nothing (no HTTP polling)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._connection: Any = None

    async def active(self) -> int:
        if self.database_url.startswith("sqlite:///"):
            return await asyncio.to_thread(self._sqlite_active, self.database_url.removeprefix("sqlite:///"))
        if self._connection is None:
            self._connection = await asyncpg.connect(self.database_url)
        return int(await self._connection.fetchval("SELECT count(*) FROM runs WHERE status = ANY($1)", list(ACTIVE)))

    @staticmethod
    def _sqlite_active(path: str) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
            marks = ",".join("?" * len(ACTIVE))
            return connection.execute(f"SELECT count(*) FROM runs WHERE status IN ({marks})", ACTIVE).fetchone()[0]

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def wait_idle(watch: QueueWatch) -> None:
    """Wait until no run is active."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while active := await watch.active():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{active} run(s) did not finish in {RUN_TIMEOUT_SECONDS:g}s")
        await asyncio.sleep(POLL_SECONDS)


async def read_runs(client: httpx.AsyncClient, run_ids: list[str]) -> list[dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = (await client.get("/runs/", params={"limit": 200, "offset": offset})).json()
        runs.update((run["id"], run) for run in page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    return [runs[run_id] for run_id in run_ids]


async def wait_finished(client: httpx.AsyncClient, watch: QueueWatch, run_ids: list[str]) -> list[dict[str, Any]]:
    await wait_idle(watch)
    return await read_runs(client, run_ids)


async def database_work(client: httpx.AsyncClient) -> tuple[float, float]:
    """(statements, transactions) the server's run executions have sent so far."""
    counts = {"mgx_db_statements": 0.0, "mgx_db_transactions": 0.0}
    for family in text_string_to_metric_families((await client.get("/metrics")).text):
        if family.name in counts:
            counts[family.name] = sum(
                sample.value for sample in family.samples
                if sample.labels.get("source") == "run" and sample.name.endswith("_total")
            )
    return counts["mgx_db_statements"], counts["mgx_db_transactions"]


async def measure_level(server: ApiServer, watch: QueueWatch, runs: int) -> LevelResult:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        warm_up = await start_runs(client, await create_tasks(client, 1, "warm-up"))
        await wait_finished(client, watch, warm_up)
        task_ids = await create_tasks(client, runs, f"level {runs}")
        statements_before, transactions_before = await database_work(client)
        cpu_before = server.cpu_seconds()
        run_ids = await start_runs(client, task_ids)
        await wait_idle(watch)
        cpu_used = server.cpu_seconds() - cpu_before
        finished = await read_runs(client, run_ids)
        statements, transactions = await database_work(client)
    waits = [(at(run, "started_at") - at(run, "created_at")) * 1000 for run in finished]
    wall = max(at(run, "finished_at") for run in finished) - min(at(run, "created_at") for run in finished)
    rss = server.peak_rss_kib()
    return LevelResult(
        runs=runs,
        wall_seconds=wall,
        queue_p50_ms=percentile(waits, 0.50),
        queue_p95_ms=percentile(waits, 0.95),
        peak_rss_mib=rss / 1024 if rss is not None else None,
        cpu_ms_per_run=cpu_used * 1000 / runs,
        failed=sum(run["status"] != "completed" for run in finished),
        statements_per_run=(statements - statements_before) / runs,
        transactions_per_run=(transactions - transactions_before) / runs,
        sample_run=next((run["id"] for run in finished if run["status"] == "completed"), None),
    )


async def measure_pickup(server: ApiServer, watch: QueueWatch) -> list[float]:
    """With one worker, queue two runs at once: the gap between the first finishing and the
    second being claimed is the pick-up latency."""
    gaps = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for pair in range(PICKUP_PAIRS):
            task_ids = await create_tasks(client, 2, f"pick-up {pair}")
            finished = await wait_finished(client, watch, await start_runs(client, task_ids))
            first, second = sorted(finished, key=lambda run: at(run, "started_at"))
            gaps.append((at(second, "started_at") - at(first, "finished_at")) * 1000)
    return gaps


def run_server(env: dict[str, str], workdir: Path, name: str, workers: int) -> ApiServer:
    return ApiServer({**env, "RUNNER_WORKERS": str(workers)}, workdir / name, name=name).start()


async def export_journal(database_url: str, run_id: str, path: Path) -> None:
    """One finished service run's events and artifacts, for the floor to write the same rows."""
    connection = await asyncpg.connect(database_url)
    try:
        events = await connection.fetch("SELECT type, data FROM run_events WHERE run_id = $1 ORDER BY seq", uuid.UUID(run_id))
        artifacts = await connection.fetch(
            "SELECT name, media_type, content FROM artifacts WHERE run_id = $1", uuid.UUID(run_id)
        )
    finally:
        await connection.close()
    journal = {
        "events": [[row["type"], json.loads(row["data"])] for row in events],
        "artifacts": [
            {"name": row["name"], "media_type": row["media_type"], "content": bytes(row["content"]).hex()}
            for row in artifacts
        ],
    }
    path.write_text(json.dumps(journal), encoding="utf-8")


def measure_floor(database_url: str, llm_base_url: str, runs: int, journal: Path) -> dict[str, float]:
    """CPU and wall seconds of ``runs`` floor runs (bench/run_floor.py, its own process)."""
    script = Path(__file__).resolve().parent / "run_floor.py"
    done = subprocess.run(
        [sys.executable, str(script), database_url, llm_base_url, str(runs), str(journal)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


async def bench(args: argparse.Namespace, database_url: str, workdir: Path) -> int:
    # In a process of its own: sharing this one's interpreter (and GIL) with the HTTP client that
    # creates the runs slowed both, and stretched the creations of 100 runs over seconds.
    fake = FakeLLMProcess(latency_ms=args.latency_ms).start()
    env = service_env(
        database_url, fake.base_url, LOG_LEVEL="WARNING", RUNNER_POLL_SECONDS=2, DB_POOL_SIZE=40, DB_MAX_OVERFLOW=20,
        RATE_LIMIT_PER_MINUTE=0,  # one client creates and polls every run: measure the runner, not the limiter
    )
    results: list[LevelResult] = []
    pickups: list[float] = []
    floor: dict[str, float] | None = None
    watch = QueueWatch(database_url)
    try:
        for runs in args.levels:
            server = run_server(env, workdir, f"level-{runs}", max(args.workers, runs))
            try:
                results.append(await measure_level(server, watch, runs))
            finally:
                server.stop()
        server = run_server(env, workdir, "pickup", 1)
        try:
            pickups = await measure_pickup(server, watch)
        finally:
            server.stop()
        if args.sandbox_runs:
            # The same runs with their generated tests executed in bubblewrap: its cost per run.
            server = run_server({**env, "MGX_SANDBOX": "bwrap"}, workdir, "sandbox", max(args.workers, args.sandbox_runs))
            try:
                sandboxed = await measure_level(server, watch, args.sandbox_runs)
                sandboxed.sandboxed = True
                results.append(sandboxed)
            finally:
                server.stop()
        largest = max((r for r in results if not r.sandboxed), key=lambda r: r.runs)
        if not args.sqlite and largest.sample_run is not None:
            journal = workdir / "journal.json"
            await export_journal(database_url, largest.sample_run, journal)
            floor = await asyncio.to_thread(measure_floor, database_url, fake.base_url, largest.runs, journal)
    finally:
        await watch.close()
        fake.stop()
    return report(args, results, pickups, floor)


def report(
    args: argparse.Namespace, results: list[LevelResult], pickups: list[float], floor: dict[str, float] | None
) -> int:
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(
        f"\nRuns throughput: {database}, fake LLM {args.latency_ms:g} ms/call, MGX_SANDBOX=off (bwrap: MGX_SANDBOX=bwrap), "
        f"auto_approve_plan, RUNNER_WORKERS=max({args.workers}, runs)\n"
    )
    header = (
        f"{'runs':>9} {'wall s':>8} {'runs/s':>8} {'queue p50 ms':>13} {'queue p95 ms':>13} "
        f"{'peak RSS MiB':>13} {'CPU ms/run':>11} {'stmts/run':>10} {'txns/run':>9} {'failed':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rss = f"{r.peak_rss_mib:.1f}" if r.peak_rss_mib is not None else "n/a"
        runs = f"{r.runs}{' bwrap' if r.sandboxed else ''}"
        print(
            f"{runs:>9} {r.wall_seconds:>8.3f} {r.runs_per_second:>8.2f} {r.queue_p50_ms:>13.1f} "
            f"{r.queue_p95_ms:>13.1f} {rss:>13} {r.cpu_ms_per_run:>11.1f} {r.statements_per_run:>10.1f} "
            f"{r.transactions_per_run:>9.1f} {r.failed:>7}"
        )
    print()
    met = True
    if any(r.sandboxed for r in results):
        print("(bwrap: MGX_SANDBOX=bwrap, the generated tests executed in bubblewrap)\n")
    results = [r for r in results if not r.sandboxed]
    by_size = {r.runs: r for r in results}
    if 1 in by_size and len(by_size) > 1:
        single = by_size[1].wall_seconds
        largest = by_size[max(by_size)]
        ratio = largest.wall_seconds / single
        ok = ratio <= SCALING_TARGET
        met &= ok
        print(
            f"scaling: {largest.runs} runs took {ratio:.2f}x one run "
            f"(target <= {SCALING_TARGET:g}x): {'met' if ok else 'NOT met'}"
        )
    if results:
        budget = MODEL_REPLIES_PER_RUN + STATUS_CHANGES_PER_RUN
        most = max(r.transactions_per_run for r in results)
        ok = most <= budget
        met &= ok
        print(
            f"transactions per run: at most {most:.1f} (target <= {MODEL_REPLIES_PER_RUN} replies + "
            f"{STATUS_CHANGES_PER_RUN} status changes = {budget}): {'met' if ok else 'NOT met'}"
        )
    if pickups:
        worst = max(pickups)
        ok = worst < PICKUP_TARGET_MS
        met &= ok
        shown = ", ".join(f"{gap:.1f}" for gap in pickups)
        print(
            f"pick-up with 1 worker: {shown} ms (median {statistics.median(pickups):.1f}, "
            f"worst {worst:.1f}; target < {PICKUP_TARGET_MS:g} ms): {'met' if ok else 'NOT met'}"
        )
    if floor is not None and results:
        largest = max(results, key=lambda r: r.runs)
        floor_ms = floor["cpu_seconds"] * 1000 / largest.runs
        ratio = largest.cpu_ms_per_run / floor_ms
        ok = ratio <= FLOOR_TARGET
        met &= ok
        print(
            f"floor ({largest.runs} runs, the same model calls through bare aiohttp and the same rows through "
            f"raw asyncpg, {floor['transactions_per_run']:g} transactions per run): {floor_ms:.1f} ms CPU per run, "
            f"wall {floor['wall_seconds']:.2f} s; service/floor CPU per run {ratio:.2f}x "
            f"(target <= {FLOOR_TARGET:g}x): {'met' if ok else 'NOT met'}"
        )
    failed = sum(r.failed for r in results)
    if failed:
        met = False
        print(f"{failed} run(s) did not complete")
    print(f"\nall targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="use an SQLite file instead of PostgreSQL")
    parser.add_argument("--levels", default="1,10,100", help="concurrent runs per level (comma-separated)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="fake LLM latency per call")
    parser.add_argument("--workers", type=int, default=100, help="RUNNER_WORKERS (at least the level)")
    parser.add_argument(
        "--sandbox-runs", type=int, default=10, help="concurrent runs of the sandboxed level (0: none)"
    )
    args = parser.parse_args(argv)
    args.levels = [int(part) for part in args.levels.split(",") if part.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mgx-bench-") as tmp:
        workdir = Path(tmp)
        if args.sqlite:
            code = asyncio.run(bench(args, f"sqlite:///{workdir / 'bench.db'}", workdir))
        else:
            server_url = postgres_url_for_tests()
            if not tcp_reachable(server_url, 5432):
                print(f"PostgreSQL is not reachable at {server_url}; set TEST_DATABASE_URL or use --sqlite")
                return 2
            database = PostgresTestDatabase(server_url)
            database.create()
            try:
                url = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
                code = asyncio.run(bench(args, url, workdir))
            finally:
                database.drop()
    print(f"(bench took {time.monotonic() - started:.1f}s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
