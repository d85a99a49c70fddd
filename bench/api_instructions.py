"""API overhead in CPU instructions per request: the service against the minimal app, counted by
valgrind, for the scenarios of ``bench/api_latency.py``.

Requests/s on a shared machine moves by +-15% between runs; instruction counts do not, so this is
the script to judge a change to the request path with (``api_latency.py`` remains the figure the
target is stated in). Each app runs in its own process under ``valgrind --tool=callgrind`` with
collection off; the process builds the app (the service as ``api_latency.py`` runs it: admin API
key, rate limiter on but never throttling), starts its lifespan on a throw-away PostgreSQL
database, warms up, then collection is switched on (``callgrind_control -i on``) around
``--requests`` ASGI calls sent by ``--concurrency`` tasks, with garbage collection paused so a
collection landing in one run and not the other does not decide the comparison. No HTTP server
is involved: what is counted is the app and its database driver, the part the two apps differ in.

    python bench/api_instructions.py [--requests 200] [--concurrency 16]

Needs Debian's ``valgrind`` (``apt-get install valgrind``); about a minute per app and scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.schemas.tasks import TaskCreate  # noqa: E402
from backend.services.tasks import TaskService  # noqa: E402
from bench.api_latency import SCENARIOS, service_overrides  # noqa: E402
from tests.databases import PostgresTestDatabase  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402

API_KEY = "bench-instructions-key"
SEED_TASKS = 50
WARMUP_REQUESTS = 100
_COLLECTED = re.compile(r"Collected : (\d+)")


# One app in this process (the child, under valgrind).


async def asgi_call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One HTTP request straight into ``app``; its status."""
    path, _, query = path.partition("?")
    if body:
        headers = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"bench"), *headers], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def build_app(which: str) -> Any:
    if which == "service":
        from backend.app.main import create_app

        return create_app()
    from bench.minimal_app import app

    return app


async def measure_in_process(which: str, scenario_name: str, seed_ids: list[str], requests: int,
                             concurrency: int) -> None:
    scenario = next(item for item in SCENARIOS if item.name == scenario_name)
    app = build_app(which)
    _, header_map = service_overrides(API_KEY)
    headers = [(name.lower().encode(), value.encode()) for name, value in header_map.items()] if which == "service" else []
    plan = scenario.requests(seed_ids)

    async def client(first: int, until: int) -> None:
        for index in range(first, until, concurrency):
            method, path, body = plan[index % len(plan)]
            status = await asgi_call(app, method, path, body, headers)
            if status != scenario.expected_status:
                raise SystemExit(f"{which} {scenario.name}: answered {status}")

    async with app.router.lifespan_context(app):
        await asyncio.gather(*(client(k, WARMUP_REQUESTS) for k in range(concurrency)))
        gc.collect()
        gc.disable()
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
        await asyncio.gather(*(client(k, requests) for k in range(concurrency)))
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
        gc.enable()


# The parent: database, seed, one valgrind child per app and scenario, the table.


def child_environment(database: PostgresTestDatabase) -> dict[str, str]:
    env, _ = service_overrides(API_KEY)
    prefixes = ("API_", "MGX_", "DB_", "REDIS", "DATABASE", "LOG_", "RUNNER_", "RATE_LIMIT")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    environment.update(
        env,
        DATABASE_URL=database.url.render_as_string(hide_password=False),
        DB_AUTO_MIGRATE="false",
        DB_POOL_SIZE="16",
        MGX_SANDBOX="off",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    return environment


async def seed(environment: dict[str, str]) -> list[str]:
    os.environ.update(environment)
    app = build_app("service")
    _, header_map = service_overrides(API_KEY)
    headers = [(name.lower().encode(), value.encode()) for name, value in header_map.items()]
    ids = []
    async with app.router.lifespan_context(app):
        service = TaskService(app.state.database)
        for index in range(SEED_TASKS):
            created = await service.create_task(
                TaskCreate(title=f"seed task {index}", description="bench seed " * 20), idempotency_key=None
            )
            ids.append(str(created.body["id"]))
        assert await asgi_call(app, "GET", f"/tasks/{ids[0]}", b"", headers) == 200
    return ids


def count(which: str, scenario: str, seed_file: Path, environment: dict[str, str], args: argparse.Namespace) -> int:
    """Instructions per request of ``which`` in ``scenario``, from a valgrind child."""
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", which, scenario, str(seed_file),
        "--requests", str(args.requests), "--concurrency", str(args.concurrency),
    ]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    collected = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or collected is None:
        tail = "\n".join(result.stderr.splitlines()[-15:])
        raise SystemExit(f"{which} {scenario} failed (exit {result.returncode}):\n{tail}")
    return int(collected.group(1)) // args.requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured requests per app and scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--postgres-url", default=postgres_url_for_tests())
    parser.add_argument("--child", nargs=3, metavar=("APP", "SCENARIO", "SEED_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be positive")

    if args.child:
        which, scenario, seed_file = args.child
        seed_ids = json.loads(Path(seed_file).read_text())
        asyncio.run(measure_in_process(which, scenario, seed_ids, args.requests, args.concurrency))
        return 0

    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    if not tcp_reachable(args.postgres_url, 5432):
        parser.error(f"PostgreSQL is not reachable at {args.postgres_url}")
    database = PostgresTestDatabase(args.postgres_url)
    database.create()
    try:
        environment = child_environment(database)
        seed_ids = asyncio.run(seed(environment))
        with tempfile.TemporaryDirectory() as workdir:
            seed_file = Path(workdir) / "seed.json"
            seed_file.write_text(json.dumps(seed_ids))
            rows = []
            for scenario in SCENARIOS:
                counts = {which: count(which, scenario.name, seed_file, environment, args) for which in ("service", "minimal")}
                rows.append((scenario.name, counts))
    finally:
        database.drop()

    print(f"\nAPI overhead in instructions per request (valgrind, in-process ASGI, PostgreSQL, "
          f"{args.requests} requests, {args.concurrency} in flight)\n")
    print(f"{'scenario':22} {'service k':>10} {'minimal k':>10} {'ratio':>6}")
    print("-" * 51)
    for name, counts in rows:
        ratio = counts["minimal"] / counts["service"]
        print(f"{name:22} {counts['service'] // 1000:>10} {counts['minimal'] // 1000:>10} {ratio:>6.2f}")
    print("\nratio = minimal app's instructions / the service's (1.0: no overhead around the SQL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
