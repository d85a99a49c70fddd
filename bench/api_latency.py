"""API latency on PostgreSQL: the service against a minimal FastAPI app running the same SQL.

For ``GET /tasks/{id}``, ``GET /tasks/?limit=50`` and ``POST /tasks/``, with 1 and ``--workers``
server processes, prints requests/s, p50 and p99 latency and the servers' CPU time per request
for the service and for ``bench/minimal_app.py`` side by side. The figure is the ratio of their
requests/s (target: the service reaches at least 0.7 of the minimal app); the ratio of their CPU
time per request is printed next to it, as it suffers less from other load on the machine.

The minimal app runs the service's SQL statements, captured from its SQL log and copied verbatim,
through the service's engine factory (same driver, pool and its checkout check), one transaction per
request like the service; it has no ORM objects, schemas, dependencies or middleware (see its
docstring; ``tests/integration/bench`` keeps its statements in step with the service's).

Both run as uvicorn subprocesses on one throw-away PostgreSQL database (created on the server
of ``--postgres-url``, default ``TEST_DATABASE_URL``, and dropped afterwards): the service via
its own entry point ``python -m backend.app.main`` with ``API_WORKERS``, the minimal app via
``uvicorn --workers``; both keep uvicorn's access log and get ``DB_POOL_SIZE`` = one connection
per client connection (at least 10). The service runs as deployed: with an admin API key
(``API_KEYS``, sent as a bearer token) and its rate limiter on, raised to the largest allowed
limits so it never throttles. The database holds ``--seed`` tasks; the tasks the ``POST``
scenario creates are deleted after it.

The load comes from this process (``bench/http_load.py``: asyncio on uvloop, raw HTTP/1.1
keep-alive connections, cheap next to the servers): ``--concurrency`` connections send requests
back to back. Per scenario each app is warmed up, then measured in ``--rounds`` alternating
slices (service, minimal, service, ...) of ``--duration / --rounds`` seconds, each on fresh
connections, so drift in the machine's other load hits both apps alike.

    python bench/api_latency.py [--duration 8] [--rounds 4] [--concurrency 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from backend.config import Settings  # noqa: E402
from bench.http_load import Sample, drive, encode_request, run_loop  # noqa: E402
from tests.databases import PostgresTestDatabase  # noqa: E402
from tests.e2e.conftest import ApiServer, free_port, service_env  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402

RATIO_TARGET = 0.7
BENCH_TITLE = "api latency bench"
# Rate limit settings, raised to their largest allowed value (where the service has them): the
# limiter still runs on every request, as deployed, but never throttles the load.
RATE_LIMIT_SETTINGS = ("rate_limit_per_minute", "rate_limit_burst")


@dataclass(frozen=True)
class Scenario:
    name: str
    expected_status: int
    # The requests sent in turn, from the seeded task ids: (method, path, JSON body or b"").
    requests: Callable[[list[str]], list[tuple[str, str, bytes]]]


def _get_one(seed_ids: list[str]) -> list[tuple[str, str, bytes]]:
    return [("GET", f"/tasks/{task_id}", b"") for task_id in seed_ids]


def _list(_: list[str]) -> list[tuple[str, str, bytes]]:
    return [("GET", "/tasks/?limit=50", b"")]


def _create(_: list[str]) -> list[tuple[str, str, bytes]]:
    body = json.dumps({"title": BENCH_TITLE, "description": "created by the benchmark", "config": {}}).encode()
    return [("POST", "/tasks/", body)]


SCENARIOS = [
    Scenario("GET /tasks/{id}", 200, _get_one),
    Scenario("GET /tasks/?limit=50", 200, _list),
    Scenario("POST /tasks/", 201, _create),
]


@dataclass(frozen=True)
class Row:
    scenario: str
    processes: int
    samples: dict[str, Sample]  # "service" and "minimal"

    @property
    def ratio(self) -> float:
        """Throughput of the service relative to the minimal app (the figure)."""
        minimal = self.samples["minimal"].requests_per_second
        return self.samples["service"].requests_per_second / minimal if minimal else 0.0

    @property
    def cpu_ratio(self) -> float:
        """CPU per request of the minimal app relative to the service's: the same comparison, less
        sensitive to other load on the machine."""
        return self.samples["minimal"].cpu_us_per_request / self.samples["service"].cpu_us_per_request


# Servers.


def process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and its live descendants (uvicorn's worker processes)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, total = {root}, 0.0
    for _ in range(3):  # supervisor -> workers (-> their helpers)
        tree |= {pid for pid, (parent, _) in stats.items() if parent in tree}
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


class BenchServer(ApiServer):
    """A server subprocess whose command line depends on its port and which is ready when
    ``ready_path`` answers 200 (``ApiServer`` waits for ``/health/ready``), stopped with its workers."""

    def __init__(self, argv_for_port: Callable[[int], list[str]], env: dict[str, str], workdir: Path, name: str,
                 ready_path: str) -> None:
        super().__init__(env, workdir, name=name)
        self.argv_for_port = argv_for_port
        self.ready_path = ready_path

    def start(self, attempts: int = 3) -> BenchServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    self.argv_for_port(self.port),
                    cwd=self.workdir,
                    env={**self.env, "API_PORT": str(self.port), "API_HOST": "127.0.0.1"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready_at(self.ready_path):
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def _wait_ready_at(self, path: str) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if client.get(path).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        return False

    def kill(self) -> None:
        if self.running():
            os.killpg(self.pid, signal.SIGKILL)  # the supervisor and its workers
            assert self.process is not None
            self.process.wait(10)


def largest_allowed(setting: str) -> int:
    bounds = [item.le for item in Settings.model_fields[setting].metadata if getattr(item, "le", None) is not None]
    return int(min(bounds)) if bounds else 10**9


def service_overrides(api_key: str) -> tuple[dict[str, str], dict[str, str]]:
    """Environment and request headers that run the service as deployed but never throttled."""
    fields = Settings.model_fields
    env = {name.upper(): str(largest_allowed(name)) for name in RATE_LIMIT_SETTINGS if name in fields}
    headers: dict[str, str] = {}
    if "api_keys" in fields:
        env["API_KEYS"] = f"bench:{api_key}:admin"
        headers["Authorization"] = f"Bearer {api_key}"
    return env, headers


def start_servers(database_url: str, workers: int, workdir: Path, api_key: str,
                  pool_size: int) -> dict[str, BenchServer]:
    env, _ = service_overrides(api_key)
    service = BenchServer(
        lambda _port: [sys.executable, "-m", "backend.app.main"],  # reads API_PORT
        service_env(database_url, None, DB_AUTO_MIGRATE="false", API_WORKERS=workers, DB_POOL_SIZE=pool_size, **env),
        workdir / f"service-{workers}", f"service-{workers}", "/health/ready",
    )
    minimal = BenchServer(
        lambda port: [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--host", "127.0.0.1",
                      "--port", str(port), "--workers", str(workers)],
        service_env(database_url, None, DB_POOL_SIZE=pool_size),
        workdir / f"minimal-{workers}", f"minimal-{workers}", "/tasks/?limit=1",
    )
    servers = {"service": service.start()}
    try:
        servers["minimal"] = minimal.start()
    except Exception:
        service.stop()
        raise
    return servers


# The benchmark.


def pool_size(args: argparse.Namespace) -> int:
    """DB_POOL_SIZE of both apps: a pool smaller than the client connections would open and close
    an overflow connection per request in both alike, so it gets one per connection."""
    return max(10, args.concurrency)


async def seed(base_url: str, headers: dict[str, str], count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        ids: list[str] = []
        for start in range(0, count, 25):
            responses = await asyncio.gather(*(
                client.post("/tasks/", json={"title": f"seed task {i}", "description": "bench seed " * 20,
                                             "config": {"max_rounds": 3, "auto_approve_plan": True}})
                for i in range(start, min(count, start + 25))
            ))
            for response in responses:
                response.raise_for_status()
                ids.append(response.json()["id"])
    return ids


async def delete_created(asyncpg_dsn: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn)
    try:
        await connection.execute("DELETE FROM tasks WHERE title = $1", BENCH_TITLE)
        await connection.execute("VACUUM ANALYZE tasks")
    finally:
        await connection.close()


async def measure_scenario(servers: dict[str, BenchServer], scenario: Scenario, seed_ids: list[str],
                           headers: dict[str, str], args: argparse.Namespace) -> dict[str, Sample]:
    def encoded(app: str) -> Iterator[bytes]:
        sent = headers if app == "service" else {}
        return cycle([encode_request(method, path, body, sent) for method, path, body in scenario.requests(seed_ids)])

    streams = {name: encoded(name) for name in servers}
    samples = {name: Sample() for name in servers}
    for name, server in servers.items():
        await drive(server.port, streams[name], scenario.expected_status, args.warmup, None, args.concurrency)
    for _ in range(args.rounds):
        for name, server in servers.items():
            cpu_before = process_tree_cpu_seconds(server.pid)
            await drive(server.port, streams[name], scenario.expected_status, args.duration / args.rounds,
                        samples[name], args.concurrency)
            samples[name].cpu_seconds += process_tree_cpu_seconds(server.pid) - cpu_before
    return samples


async def bench(args: argparse.Namespace, database: PostgresTestDatabase, workdir: Path) -> list[Row]:
    url = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
    api_key = secrets.token_urlsafe(24)
    _, headers = service_overrides(api_key)
    rows: list[Row] = []
    seed_ids: list[str] = []
    for workers in dict.fromkeys([1, args.workers]):
        servers = start_servers(url, workers, workdir, api_key, pool_size(args))
        try:
            if not seed_ids:
                seed_ids = await seed(servers["service"].base_url, headers, args.seed)
            for scenario in SCENARIOS:
                samples = await measure_scenario(servers, scenario, seed_ids, headers, args)
                if scenario.name.startswith("POST"):
                    await delete_created(url)
                rows.append(Row(scenario.name, workers, samples))
        finally:
            for server in servers.values():
                server.stop()
    return rows


def report(args: argparse.Namespace, rows: list[Row], load: tuple[float, float]) -> int:
    env, headers = service_overrides("")
    settings = ", ".join(f"{name}={value}" for name, value in env.items() if name != "API_KEYS")
    print(
        f"\nAPI latency on PostgreSQL: {args.concurrency} connections, {args.duration:g} s per app and "
        f"scenario in {args.rounds} alternating slices, {args.seed} seeded tasks, DB_POOL_SIZE={pool_size(args)}; "
        f"service {'with an admin API key' if headers else 'open (no API_KEYS setting)'}"
        f"{', ' + settings if settings else ''}.\n{os.cpu_count()} cores shared by the servers, PostgreSQL "
        f"and this client; load average {load[0]:.2f} before, {load[1]:.2f} after.\n"
    )
    header = (f"{'scenario':<22} {'procs':>5} {'app':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU us/req':>11} {'errors':>7} {'ratio':>6} {'CPU ratio':>10}")
    print(header)
    print("-" * len(header))
    met = True
    for row in rows:
        met &= row.ratio >= RATIO_TARGET and not any(sample.errors for sample in row.samples.values())
        for app, sample in row.samples.items():
            ratios = f"{row.ratio:>6.2f} {row.cpu_ratio:>10.2f}" if app == "service" else ""
            print(f"{row.scenario:<22} {row.processes:>5} {app:<8} {sample.requests_per_second:>8.0f} "
                  f"{sample.percentile_ms(0.50):>8.2f} {sample.percentile_ms(0.99):>8.2f} "
                  f"{sample.cpu_us_per_request:>11.0f} {sum(sample.errors.values()):>7} {ratios}")
        for app, sample in row.samples.items():
            if sample.errors:
                print(f"  {app}: unexpected statuses {dict(sample.errors)}")
    print(
        f"\nratio = service req/s / minimal req/s (target >= {RATIO_TARGET:g} in every row: "
        f"{'met' if met else 'NOT met'}); CPU ratio = minimal CPU per request / service CPU per request"
    )
    return 0 if met else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per app and scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per app and scenario")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices the duration is split into")
    parser.add_argument("--concurrency", type=int, default=16, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="server processes of the second pass (API_WORKERS)")
    parser.add_argument("--seed", type=int, default=200, help="tasks in the database before measuring")
    parser.add_argument("--postgres-url", default=None,
                        help="PostgreSQL server to create the throw-away database on (default TEST_DATABASE_URL)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rounds < 1 or args.concurrency < 1 or args.seed < 1 or args.duration <= 0:
        parser.error("--workers, --rounds, --concurrency, --seed and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_url = args.postgres_url or postgres_url_for_tests()
    if not tcp_reachable(server_url, 5432):
        print(f"PostgreSQL is not reachable at {server_url}; pass --postgres-url or set TEST_DATABASE_URL")
        return 2
    started, load_before = time.monotonic(), os.getloadavg()[0]
    database = PostgresTestDatabase(server_url)
    database.create()
    try:
        with tempfile.TemporaryDirectory(prefix="mgx-bench-") as tmp:
            rows = run_loop(bench(args, database, Path(tmp)))
    finally:
        database.drop()
    code = report(args, rows, (load_before, os.getloadavg()[0]))
    print(f"(bench took {time.monotonic() - started:.1f}s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
