"""Live-event fan-out: N concurrent SSE subscribers on one run, timed from the team's emission.

For 10, 100 and 500 subscribers: start a run (plan waits for approval), connect N SSE clients
(cursor at the current end of the log, so only live events count), approve, and follow the run
to its terminal event. Latency is the client's receive time minus the event's ``created_at``,
which is the moment the team emitted it (before the runner's write-behind queue, the database
write, the commit and the fan-out). Two topologies:

- in-process: the subscribers follow the API process that executes the run;
- redis: a ``python -m backend.worker`` process executes the run, the subscribers follow an API
  process with ``RUNNER_WORKERS=0``; events cross over Redis pub/sub.

Each process has its own event loop: the fake LLM server (``python -m mgx_agent.testing.fake_llm``),
the API (and worker) processes, and this one, which holds only the subscribers. The clients speak
raw HTTP/1.0 as asyncio protocols (uvloop), stamp each chunk in the callback it arrives in and
parse after the run, so measuring stays cheap next to the server. Prints events per subscriber
(min-max of expected), subscribers that got exactly the logged sequence, p50/p99/max latency and
the CPU time of the serving process, of the worker and of this process while the run executed. Targets: p99 < 100 ms at 500
subscribers and every subscriber complete, in each topology.

Uses PostgreSQL (a throw-away database); the redis topology needs Redis (``--redis-url``).

    python bench/events_fanout.py [--subscribers 10,100,500] [--runs 3] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import redis  # noqa: E402
import uvloop  # noqa: E402

from mgx_agent.testing.fake_llm import FakeLLMProcess  # noqa: E402
from tests.databases import PostgresTestDatabase  # noqa: E402
from tests.e2e.conftest import ApiServer  # noqa: E402
from tests.e2e.events_support import api_process  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402

TARGET_SUBSCRIBERS, TARGET_P99_MS = 500, 100.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/4"


class Subscriber(asyncio.Protocol):
    """One SSE client over raw HTTP/1.0: each chunk is stamped as it arrives, in a protocol
    callback (no task wakes per read, so the measuring side stays cheap), and parsed after the run."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: list[tuple[float, bytes]] = []
        self.connected = asyncio.Event()  # the response headers arrived
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))
        if not self.connected.is_set() and b"\r\n\r\n" in b"".join(chunk for _, chunk in self.chunks):
            self.connected.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)

    def events(self) -> list[tuple[int, float]]:
        """``(seq, latency ms)`` per stored event received, in order; an event counts as received
        when the chunk that completed it arrived."""
        body = b"".join(chunk for _, chunk in self.chunks)
        chunk_ends = list(itertools.accumulate(len(chunk) for _, chunk in self.chunks))
        events = []
        position = body.index(b"\r\n\r\n") + 4
        while (end := body.find(b"\n\n", position)) != -1:
            received = self.chunks[bisect.bisect_left(chunk_ends, end + 2)][0]
            for line in body[position:end].split(b"\n"):
                if line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    if event["seq"] is not None:
                        emitted = datetime.fromisoformat(event["created_at"]).timestamp()
                        events.append((event["seq"], (received - emitted) * 1000))
            position = end + 2
        return events


async def subscribe(port: int, run_id: str, after: int) -> Subscriber:
    request = f"GET /runs/{run_id}/events?after={after} HTTP/1.0\r\nHost: bench\r\n\r\n".encode()
    _, subscriber = await asyncio.get_running_loop().create_connection(lambda: Subscriber(request), "127.0.0.1", port)
    return subscriber


@dataclass
class Topology:
    name: str
    subscribed: ApiServer  # the subscribers' API process; the bench drives the run through it
    executor: ApiServer | None  # the worker process, when it is not the subscribed one


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


async def follow_one_run(topology: Topology, subscribers: int) -> dict[str, object]:
    server = topology.subscribed
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        task = (await client.post("/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)"})).json()
        run = (await client.post("/runs/", json={"task_id": task["id"]})).json()
        while (await client.get(f"/runs/{run['id']}")).json()["status"] != "awaiting_approval":
            await asyncio.sleep(0.05)
        after = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 1000})).json()["next_after"]
        clients = await asyncio.gather(*(subscribe(server.port, run["id"], after) for _ in range(subscribers)))
        await asyncio.wait_for(asyncio.gather(*(item.connected.wait() for item in clients)), 60)
        await asyncio.sleep(0.5)  # let every stream finish its (empty) replay
        cpu_before = cpu_seconds(topology)
        wall_before = time.monotonic()
        assert (await client.post(f"/runs/{run['id']}/approve", json={})).status_code == 200
        await asyncio.wait_for(asyncio.gather(*(item.closed for item in clients)), 120)
        wall = time.monotonic() - wall_before
        cpu = {key: value - cpu_before[key] for key, value in cpu_seconds(topology).items()}
        logged = (await client.get(f"/runs/{run['id']}/logs", params={"after": after, "limit": 1000})).json()
    expected = [item["seq"] for item in logged["items"]]
    received = [item.events() for item in clients]
    return {
        "expected": len(expected),
        "counts": [len(events) for events in received],
        "complete": sum([seq for seq, _ in events] == expected for events in received),
        "latencies": [latency for events in received for _, latency in events],
        "cpu": cpu,
        "wall": wall,
    }


def cpu_seconds(topology: Topology) -> dict[str, float]:
    """CPU time so far of the serving process, the worker (if any) and this one (the subscribers)."""
    times = {"api": topology.subscribed.cpu_seconds(), "bench": time.process_time()}
    if topology.executor is not None:
        times["worker"] = topology.executor.cpu_seconds()
    return times


def measure(topology: Topology, subscribers: int, runs: int) -> dict[str, object]:
    results = [uvloop.run(follow_one_run(topology, subscribers)) for _ in range(runs)]
    latencies = [value for result in results for value in result["latencies"]]
    counts = [count for result in results for count in result["counts"]]
    return {
        "topology": topology.name,
        "subscribers": subscribers,
        "expected": "/".join(sorted({str(result["expected"]) for result in results})),
        "min": min(counts),
        "max": max(counts),
        "complete": sum(result["complete"] for result in results),
        "of": subscribers * runs,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "worst": max(latencies, default=float("nan")),
        "cpu": {key: sum(result["cpu"][key] for result in results) / runs for key in results[0]["cpu"]},
        "wall": sum(result["wall"] for result in results) / runs,
    }


def start(stack: ExitStack, server: ApiServer) -> ApiServer:
    server.start()
    stack.callback(server.stop)
    return server


def print_table(rows: list[dict[str, object]], runs: int, latency_ms: float) -> None:
    print(f"events fan-out: one run at a time ({runs} per level), N SSE subscribers, PostgreSQL, "
          f"fake LLM {latency_ms:g} ms per call in its own process; latency from the team's emission")
    print(f"{'topology':>10} {'subscribers':>11} {'events/sub (min-max of expected)':>33} {'complete':>11} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'API CPU s':>10} {'worker CPU s':>13} {'bench CPU s':>12} "
          f"{'wall s':>7}")
    for row in rows:
        delivered = f"{row['min']}-{row['max']} of {row['expected']}"
        complete = f"{row['complete']}/{row['of']}"
        cpu = row["cpu"]
        worker = f"{cpu['worker']:.2f}" if "worker" in cpu else "-"
        print(f"{row['topology']:>10} {row['subscribers']:>11} {delivered:>33} {complete:>11} {row['p50']:>7.1f} "
              f"{row['p99']:>7.1f} {row['worst']:>7.1f} {cpu['api']:>10.2f} {worker:>13} {cpu['bench']:>12.2f} "
              f"{row['wall']:>7.2f}")
    for row in rows:
        if row["subscribers"] == TARGET_SUBSCRIBERS:
            met = row["p99"] < TARGET_P99_MS and row["complete"] == row["of"]
            print(f"target {row['topology']}: p99 < {TARGET_P99_MS:g} ms at {TARGET_SUBSCRIBERS} subscribers and "
                  f"0 lost: {'met' if met else 'not met'} (p99 {row['p99']:.1f} ms, "
                  f"{row['of'] - row['complete']} incomplete)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="10,100,500", help="comma-separated subscriber counts")
    parser.add_argument("--runs", type=int, default=3, help="runs per level (latencies pooled)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fake LLM delay per call")
    parser.add_argument("--topologies", default="in-process,redis")
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args()
    counts = [int(item) for item in args.subscribers.split(",")]
    names = args.topologies.split(",")
    if not tcp_reachable(postgres_url_for_tests(), 5432):
        raise SystemExit("this bench needs PostgreSQL (TEST_DATABASE_URL)")
    if "redis" in names and not tcp_reachable(args.redis_url, 6379):
        raise SystemExit(f"the redis topology needs Redis at {args.redis_url}")

    with ExitStack() as stack, tempfile.TemporaryDirectory() as workdir:
        base_url = stack.enter_context(FakeLLMProcess(latency_ms=args.latency_ms)).base_url
        database = PostgresTestDatabase(postgres_url_for_tests())
        database.create()
        stack.callback(database.drop)
        settings: dict[str, object] = {
            "database_url": database.url.render_as_string(hide_password=False),
            "db_auto_migrate": "false",
            "mgx_llm_base_url": base_url,
            "mgx_llm_api_key": "bench-key",
            "runner_poll_seconds": 0.2,
            "log_level": "WARNING",
            # Every subscriber connects from this host: lift the per-client stream cap and rate limit.
            "max_streams_per_client": 0,
            "rate_limit_per_minute": 0,
        }
        rows = []
        for name in names:
            with ExitStack() as processes:
                if name == "in-process":
                    api = start(processes, api_process("bench-api", Path(workdir), runner_workers=1, **settings))
                    topology = Topology(name, api, None)
                elif name == "redis":
                    redis.Redis.from_url(args.redis_url).flushdb()
                    shared = {**settings, "redis_url": args.redis_url}
                    worker = api_process("bench-worker", Path(workdir), runner_workers=1, **shared)
                    worker.command = [sys.executable, "-m", "backend.worker"]
                    start(processes, worker)
                    api = start(processes, api_process("bench-api-b", Path(workdir), runner_workers=0, **shared))
                    topology = Topology(name, api, worker)
                else:
                    raise SystemExit(f"unknown topology {name!r} (in-process, redis)")
                rows.extend(measure(topology, count, args.runs) for count in counts)
    print_table(rows, args.runs, args.latency_ms)


if __name__ == "__main__":
    main()
