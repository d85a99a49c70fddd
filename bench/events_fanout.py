"""Live-event fan-out: N concurrent SSE subscribers on one run of a real API process.

For 10, 100 and 500 subscribers: start a run (plan waits for approval), connect N SSE clients
(cursor at the current end of the log, so only live events count), approve, and follow the run
to its terminal event. Prints events delivered per subscriber (min/max vs. expected), p50/p99
delivery latency (event written, i.e. its ``created_at``, to received by the client) and the
server's CPU time while the run executed. Target: every subscriber receives every event and p99
stays under 100 ms at 500 subscribers.

Uses PostgreSQL (a throw-away database) when reachable, else SQLite. The clients speak raw
HTTP/1.0 over asyncio streams so the measuring process stays cheap next to the server.

    python bench/events_fanout.py [--subscribers 10,100,500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from mgx_agent.testing.fake_llm import FakeLLMServer  # noqa: E402
from tests.databases import PostgresTestDatabase  # noqa: E402
from tests.e2e.conftest import ApiServer  # noqa: E402
from tests.e2e.events_support import api_process  # noqa: E402
from tests.services import postgres_url_for_tests, tcp_reachable  # noqa: E402


class Subscriber:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.latencies_ms: list[float] = []
        self.connected = asyncio.Event()

    async def follow(self, port: int, run_id: str, after: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(f"GET /runs/{run_id}/events?after={after} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        await writer.drain()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # response headers
        self.connected.set()
        try:
            while line := await reader.readline():
                if line.startswith(b"data: "):
                    received = time.time()
                    event = json.loads(line[6:])
                    self.seqs.append(event["seq"])
                    written = datetime.fromisoformat(event["created_at"]).timestamp()
                    self.latencies_ms.append((received - written) * 1000)
        finally:
            writer.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


async def measure(server: ApiServer, subscribers: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        task = (await client.post("/tasks/", json={"title": "fizzbuzz", "description": "write fizzbuzz(n)"})).json()
        run = (await client.post("/runs/", json={"task_id": task["id"]})).json()
        while (await client.get(f"/runs/{run['id']}")).json()["status"] != "awaiting_approval":
            await asyncio.sleep(0.05)
        after = (await client.get(f"/runs/{run['id']}/logs", params={"limit": 1000})).json()["next_after"]
        clients = [Subscriber() for _ in range(subscribers)]
        tasks = [asyncio.create_task(item.follow(server.port, run["id"], after)) for item in clients]
        await asyncio.wait_for(asyncio.gather(*(item.connected.wait() for item in clients)), 60)
        await asyncio.sleep(0.5)  # let every stream finish its (empty) replay
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        assert (await client.post(f"/runs/{run['id']}/approve", json={})).status_code == 200
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        cpu, wall = server.cpu_seconds() - cpu_before, time.monotonic() - wall_before
        logged = (await client.get(f"/runs/{run['id']}/logs", params={"after": after, "limit": 1000})).json()
    expected = [item["seq"] for item in logged["items"]]
    latencies = [value for item in clients for value in item.latencies_ms]
    return {
        "subscribers": subscribers,
        "expected": len(expected),
        "min": min(len(item.seqs) for item in clients),
        "max": max(len(item.seqs) for item in clients),
        "complete": sum(item.seqs == expected for item in clients),
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "cpu": cpu,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="10,100,500", help="comma-separated subscriber counts")
    counts = [int(item) for item in parser.parse_args().subscribers.split(",")]

    with ExitStack() as stack, tempfile.TemporaryDirectory() as workdir:
        fake_llm = stack.enter_context(FakeLLMServer())
        settings: dict[str, object] = {
            "mgx_llm_base_url": fake_llm.base_url,
            "mgx_llm_api_key": "bench-key",
            "runner_workers": 1,
            "runner_poll_seconds": 0.2,
            "log_level": "WARNING",
            # Every subscriber connects from this host: lift the per-client stream cap and rate limit.
            "max_streams_per_client": 0,
            "rate_limit_per_minute": 0,
        }
        if tcp_reachable(postgres_url_for_tests(), 5432):
            database = PostgresTestDatabase(postgres_url_for_tests())
            database.create()
            stack.callback(database.drop)
            settings.update(database_url=database.url.render_as_string(hide_password=False), db_auto_migrate="false")
            backend = "PostgreSQL"
        else:
            settings.update(sqlite_path=Path(workdir) / "bench.db", db_auto_migrate="true")
            backend = "SQLite"
        server = api_process("bench-api", Path(workdir), **settings).start()
        stack.callback(server.stop)
        rows = [asyncio.run(measure(server, count)) for count in counts]

    print(f"events fan-out: one run, N SSE subscribers, one API process on {backend}")
    print(f"{'subscribers':>11} {'events/sub (min-max of expected)':>33} {'complete':>9} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'server CPU s':>13} {'wall s':>7}")
    for row in rows:
        delivered = f"{row['min']}-{row['max']} of {row['expected']}"
        print(f"{row['subscribers']:>11} {delivered:>33} {row['complete']:>9} {row['p50']:>8.1f} "
              f"{row['p99']:>8.1f} {row['cpu']:>13.2f} {row['wall']:>7.2f}")


if __name__ == "__main__":
    main()
