"""Scale-out: how run throughput grows with worker processes on one PostgreSQL database, and how
long the claim takes on a table that has seen a lot of runs.

    python bench/scale_out.py [--workers 1,2,4] [--runs 400] [--latency-ms 1000] [--slots 50]

1. Throughput: for each worker count, a fresh database gets ``--runs`` queued runs (one task
   each, plan approved automatically) in one transaction; then that many ``python -m
   backend.worker`` processes, already started and ready, claim and execute them against the
   fake LLM server (``--latency-ms`` per call, 5 calls per run) in this process. The clock runs
   from the commit that queued the runs to the last run's ``finished_at``. Printed: runs/s, the
   ideal runs/s of the slots (slots x workers / the run's model time) and the ratio to linear
   (runs/s over N x the one-worker runs/s, measured in the same bench run).
2. Claim latency: a database with 100,000 finished and 10,000 queued runs; the runner's own claim
   statement (``RunRepository.lock_next_queued``, 16 rows, ``FOR UPDATE SKIP LOCKED``) timed
   200 times in rolled-back transactions, with the claim index and without it, and its plan.

The machine is shared: absolute runs/s depend on what else runs; the ratios within one bench run
are the figures to compare. Targets: ratio to linear >= 0.8 at every worker count the cores can
carry; claim p99 < 10 ms with the index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from backend.db.engine import create_engine, create_session_factory  # noqa: E402
from backend.db.repositories.runs import RunRepository  # noqa: E402
from backend.services.run_signals import CHANNEL  # noqa: E402
from tests.databases import PostgresTestDatabase  # noqa: E402
import tests.e2e.conftest as e2e  # noqa: E402
from tests.e2e.conftest import ApiServer, service_env, start_fake_llm  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402

MODEL_CALLS_PER_RUN = 5  # analyse, plan, code, tests, review: the demo run with no revision
LINEAR_TARGET = 0.8
CLAIM_TARGET_MS = 10.0
CLAIM_BATCH = 16
CLAIM_SAMPLES = 200
FINISHED_ROWS, QUEUED_ROWS = 100_000, 10_000
CLAIM_INDEX = "ix_runs_status_queued_at"
POLL_SECONDS = 0.2
RUN_TIMEOUT_SECONDS = 900.0
# Several workers start at once on a loaded machine: give each longer than a test would.
e2e.READY_TIMEOUT_SECONDS = 120.0
TERMINAL = ("completed", "failed", "cancelled", "rejected", "expired")

INSERT_TASKS = """
INSERT INTO tasks (id, title, description, config, status, total_runs, successful_runs, failed_runs,
                   last_run_id, last_run_status, last_run_at, created_at, updated_at, version)
SELECT t, 'bench ' || n, 'fizzbuzz(n)', '{"auto_approve_plan": true}'::jsonb, $2::text, 1, 0, 0, r, $2::text, now(), now(), now(), 1
FROM unnest($1::uuid[], $3::uuid[]) WITH ORDINALITY AS ids(t, r, n)
"""
INSERT_RUNS = """
INSERT INTO runs (id, task_id, number, status, pending_action, overrides, usage, timings, cancel_requested,
                  attempt, next_event_seq, created_at, queued_at, started_at, finished_at, updated_at, version)
SELECT r, t, 1, $3::text, 'plan', '{}', '{}', '{}', false, 0, 2,
       now() - make_interval(secs => n), now() - make_interval(secs => n),
       CASE WHEN $3::text = 'queued' THEN NULL ELSE now() END, CASE WHEN $3::text = 'queued' THEN NULL ELSE now() END,
       now(), 1
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS ids(r, t, n)
"""
INSERT_CREATED_EVENTS = """
INSERT INTO run_events (run_id, seq, type, data, created_at)
SELECT r, 1, 'run.created', jsonb_build_object('task_id', t::text, 'number', 1), now()
FROM unnest($1::uuid[], $2::uuid[]) AS ids(r, t)
"""


@dataclass
class ScaleResult:
    workers: int
    runs: int
    wall_seconds: float
    completed: int
    cpu_seconds: float

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.wall_seconds


def asyncpg_dsn(database: PostgresTestDatabase) -> str:
    return database.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def insert_runs(connection: asyncpg.Connection, count: int, status: str) -> None:
    runs = [uuid.uuid4() for _ in range(count)]
    tasks = [uuid.uuid4() for _ in range(count)]
    await connection.execute(INSERT_TASKS, tasks, status, runs)
    await connection.execute(INSERT_RUNS, runs, tasks, status)
    await connection.execute(INSERT_CREATED_EVENTS, runs, tasks)


async def queue_and_wait(dsn: str, runs: int) -> tuple[float, int]:
    """Queue ``runs`` runs in one transaction, then wait for all to finish; (wall s, completed)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await insert_runs(connection, runs, "queued")
            await connection.execute("SELECT pg_notify($1, 'queued')", CHANNEL)
        committed = time.time()
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            done = await connection.fetchval("SELECT count(*) FROM runs WHERE status = ANY($1::text[])", list(TERMINAL))
            if done >= runs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {runs} runs finished in {RUN_TIMEOUT_SECONDS:g}s")
            await asyncio.sleep(POLL_SECONDS)
        last, completed = await connection.fetchrow(
            "SELECT extract(epoch FROM max(finished_at)), count(*) FILTER (WHERE status = 'completed') FROM runs"
        )
        return float(last) - committed, int(completed)
    finally:
        await connection.close()


def measure_workers(workers: int, args: argparse.Namespace, fake_url: str, workdir: Path) -> ScaleResult:
    database = PostgresTestDatabase(postgres_url_for_tests())
    database.create()
    servers: list[ApiServer] = []
    try:
        env = service_env(
            database.url.set(drivername="postgresql").render_as_string(hide_password=False),
            fake_url,
            RUNNER_WORKERS=args.slots,
            RUNNER_POLL_SECONDS=0.5,
            DB_AUTO_MIGRATE="false",
            # The PostgreSQL server is shared: a few connections per worker are plenty.
            DB_POOL_SIZE=6,
            DB_MAX_OVERFLOW=6,
            LOG_LEVEL="WARNING",
        )
        servers = [
            ApiServer(env, workdir / f"w{workers}-{index}", name=f"worker-{index}",
                      command=[sys.executable, "-m", "backend.worker"])
            for index in range(workers)
        ]
        with ThreadPoolExecutor(workers) as starting:
            list(starting.map(ApiServer.start, servers))
        cpu_before = sum(server.cpu_seconds() for server in servers)
        wall, completed = asyncio.run(queue_and_wait(asyncpg_dsn(database), args.runs))
        cpu = sum(server.cpu_seconds() for server in servers) - cpu_before
        return ScaleResult(workers, args.runs, wall, completed, cpu)
    finally:
        for server in servers:
            server.stop()
        database.drop()


async def time_claims(session_factory, samples: int) -> list[float]:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(samples):
        async with session_factory() as session:
            started = time.perf_counter()
            claimed = await RunRepository(session).lock_next_queued(CLAIM_BATCH)
            timings.append((time.perf_counter() - started) * 1000)
            assert len(claimed) == CLAIM_BATCH
            await session.rollback()
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def explain(connection: asyncpg.Connection, sql: str) -> list[str]:
    """The plan of ``sql`` as executed (EXPLAIN ANALYZE), its row locks rolled back."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        return [row[0] for row in await connection.fetch(sql)]
    finally:
        await transaction.rollback()


async def server_claim_times(connection: asyncpg.Connection, statement: str, samples: int) -> list[float]:
    """The claim's execution time inside PostgreSQL (EXPLAIN ANALYZE), without the round trip."""
    timings = []
    for _ in range(samples):
        plan = await explain(connection, f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
        timings.append(float(json.loads(plan[0])[0]["Execution Time"]))
    return timings


async def measure_claims() -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Claim timings (round trip through the runner's repository, and inside the server) and
    plans, with the claim index, then without it."""
    database = PostgresTestDatabase(postgres_url_for_tests())
    await asyncio.to_thread(database.create)
    connection = await asyncpg.connect(asyncpg_dsn(database))
    timings: dict[str, list[float]] = {}
    plans: dict[str, list[str]] = {}
    try:
        for status, count in (("completed", FINISHED_ROWS), ("queued", QUEUED_ROWS)):
            for start in range(0, count, 10_000):
                await insert_runs(connection, min(10_000, count - start), status)
        await connection.execute("ANALYZE")
        statement = RunRepository.claim_statement(CLAIM_BATCH).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        for label in ("with the claim index", "without it"):
            if label == "without it":
                await connection.execute(f"DROP INDEX {CLAIM_INDEX}")
                await connection.execute("ANALYZE runs")
            engine = create_engine(database.url, pool_size=1, max_overflow=0)
            try:
                timings[f"{label}: round trip"] = await time_claims(create_session_factory(engine), CLAIM_SAMPLES)
            finally:
                await engine.dispose()
            timings[f"{label}: in the server"] = await server_claim_times(connection, str(statement), CLAIM_SAMPLES)
            plans[label] = await explain(connection, f"EXPLAIN (ANALYZE, COSTS OFF) {statement}")
    finally:
        await connection.close()
        await asyncio.to_thread(database.drop)
    return timings, plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=1000.0, help="fake LLM latency per call")
    parser.add_argument("--slots", type=int, default=50, help="RUNNER_WORKERS of each worker process")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    server = postgres_url_for_tests()
    if not tcp_reachable(server, 5432):
        print(f"PostgreSQL is not reachable at {server} (TEST_DATABASE_URL)", file=sys.stderr)
        return 2
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    verdicts: list[str] = []
    if not args.skip_throughput:
        results = throughput(args)
        one = results[0].runs_per_second / results[0].workers
        model_seconds = MODEL_CALLS_PER_RUN * args.latency_ms / 1000
        print(f"\n{args.runs} runs, {args.slots} slots per worker, {args.latency_ms:g} ms per model call")
        print(f"{'workers':>7} {'wall s':>8} {'runs/s':>8} {'ideal':>8} {'linear':>7} {'CPU ms/run':>11} {'completed':>10}")
        for result in results:
            ideal = result.workers * args.slots / model_seconds
            linear = result.runs_per_second / (one * result.workers)
            print(
                f"{result.workers:>7} {result.wall_seconds:>8.2f} {result.runs_per_second:>8.2f} {ideal:>8.2f} "
                f"{linear:>7.2f} {result.cpu_seconds * 1000 / result.runs:>11.1f} {result.completed:>10}"
            )
        for result in results[1:]:
            linear = result.runs_per_second / (one * result.workers)
            verdicts.append(
                f"target {result.workers} workers >= {LINEAR_TARGET}x linear: {'met' if linear >= LINEAR_TARGET else 'NOT met'} ({linear:.2f}x)"
            )
    timings, plans = asyncio.run(measure_claims())
    print(f"\nclaim of {CLAIM_BATCH} runs with {FINISHED_ROWS:,} finished and {QUEUED_ROWS:,} queued rows ({CLAIM_SAMPLES} samples)")
    print(f"{'':>36} {'p50 ms':>8} {'p99 ms':>8}")
    for label, values in timings.items():
        print(f"{label:>36} {statistics.median(values):>8.2f} {percentile(values, 0.99):>8.2f}")
    for label, plan in plans.items():
        print(f"\nplan {label}:")
        print("\n".join(f"  {line}" for line in plan))
    for where in ("in the server", "round trip"):
        p99 = percentile(timings[f"with the claim index: {where}"], 0.99)
        verdicts.append(
            f"target claim p99 < {CLAIM_TARGET_MS:g} ms ({where}): {'met' if p99 < CLAIM_TARGET_MS else 'NOT met'} ({p99:.2f} ms)"
        )
    print()
    print("\n".join(verdicts))
    return 0


def throughput(args: argparse.Namespace) -> list[ScaleResult]:
    fake, _ = start_fake_llm(latency_seconds=args.latency_ms / 1000)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="mgx-scale-out-") as workdir:
            for workers in (int(value) for value in args.workers.split(",")):
                results.append(measure_workers(workers, args, fake.base_url, Path(workdir)))
                print(f"  {workers} worker(s): {results[-1].wall_seconds:.2f} s", file=sys.stderr)
    finally:
        fake.stop()
    return results


if __name__ == "__main__":
    sys.exit(main())
