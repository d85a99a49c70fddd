"""What the agent protocols cost over REST: reading one run through ``GET /runs/{id}``, the MCP
tool ``get_run`` (``tools/call`` on ``/mcp``, protocol 2026-07-28) and A2A ``GetTask`` (JSON-RPC
on ``/a2a``, protocol 1.0), in one run of the service.

Prints requests/s, p50 and p99 latency and the server's CPU time per request for each, and the
ratio of each protocol's requests/s to REST's (target: MCP and A2A at least 0.5 of REST), then a
met / not met line.

One uvicorn process of the service (``python -m backend.app.main``, one worker) on a throw-away
SQLite database, with the offline demo model: the bench creates one task and runs it to the end
(the plan approved automatically), so every request reads a finished run with its five files.
It runs as deployed: an admin API key sent as a bearer token on every request, the rate limiter
on but raised to its largest limits so it never throttles. The requests are the ones the
official SDK clients send for these calls (captured from ``mcp.Client`` and the ``a2a-sdk``
client), sent by this process's load generator (``bench/http_load.py``: raw HTTP/1.1 keep-alive
connections, cheap next to the server): ``--concurrency`` connections back to back. Each protocol
is warmed up, then measured in ``--rounds`` alternating slices of ``--duration / --rounds``
seconds, so drift in the machine's other load hits all three alike.

Each answer carries what its protocol defines: REST the run with its files' metadata, MCP the
run view as structured content and as text, A2A the task with its files' content as artifacts.

    python bench/protocol_overhead.py [--duration 6] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.api_latency import process_tree_cpu_seconds, service_overrides  # noqa: E402
from bench.http_load import Sample, drive, encode_request, run_loop  # noqa: E402
from tests.e2e.conftest import ApiServer, service_env  # noqa: E402

RATIO_TARGET = 0.5
MCP_VERSION = "2026-07-28"


@dataclass(frozen=True)
class Protocol:
    name: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def protocols(run_id: str, auth: dict[str, str]) -> list[Protocol]:
    mcp_meta = {
        "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    mcp_call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_run", "arguments": {"run_id": run_id}, "_meta": mcp_meta},
    }
    a2a_call = {"jsonrpc": "2.0", "id": "1", "method": "GetTask", "params": {"id": run_id}}
    return [
        Protocol("REST GET /runs/{id}", "GET", f"/runs/{run_id}", b"", auth),
        Protocol(
            "MCP tools/call get_run",
            "POST",
            "/mcp",
            json.dumps(mcp_call).encode(),
            {
                **auth,
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": MCP_VERSION,
                "Mcp-Method": "tools/call",
                "Mcp-Name": "get_run",
            },
        ),
        Protocol("A2A GetTask", "POST", "/a2a", json.dumps(a2a_call).encode(), {**auth, "A2A-Version": "1.0"}),
    ]


async def finished_run(base_url: str, auth: dict[str, str]) -> str:
    """A task run to the end on the demo model; its id."""
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30) as client:
        task = (
            await client.post(
                "/tasks/",
                json={"title": "fizzbuzz", "description": "write fizzbuzz(n)", "config": {"auto_approve_plan": True}},
            )
        ).json()
        run = (await client.post("/runs/", json={"task_id": task["id"]})).json()
        deadline = time.monotonic() + 60
        while run["status"] != "completed":
            if time.monotonic() > deadline or run["status"] in {"failed", "cancelled", "rejected", "expired"}:
                raise RuntimeError(f"the bench run ended {run['status']}: {run.get('error')}")
            await asyncio.sleep(0.1)
            run = (await client.get(f"/runs/{run['id']}")).json()
        return run["id"]


async def check_answers(base_url: str, items: list[Protocol], run_id: str) -> None:
    """Each request reads the run (not an error the load would count as fast successes)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for item in items:
            response = await client.request(
                item.method, item.path, content=item.body or None,
                headers={**item.headers, **({"Content-Type": "application/json"} if item.body else {})},
            )
            body = response.json() if response.status_code == 200 else {}
            if item.path == "/mcp":
                result = body.get("result", {})
                body = {} if result.get("isError") else result.get("structuredContent", {})
            elif item.path == "/a2a":
                body = body.get("result", {})
            if body.get("id") != run_id:
                raise RuntimeError(f"{item.name} did not answer the run: {response.status_code} {response.text[:300]}")


def measure(server: ApiServer, items: list[Protocol], args: argparse.Namespace) -> dict[str, Sample]:
    samples = {item.name: Sample() for item in items}
    requests = {item.name: encode_request(item.method, item.path, item.body, item.headers) for item in items}

    async def slice_of(item: Protocol, seconds: float, sample: Sample | None) -> None:
        before = process_tree_cpu_seconds(server.pid)
        await drive(server.port, cycle([requests[item.name]]), 200, seconds, sample, args.concurrency)
        if sample is not None:
            sample.cpu_seconds += process_tree_cpu_seconds(server.pid) - before

    async def everything() -> None:
        for item in items:
            await slice_of(item, args.warmup, None)
        for _ in range(args.rounds):
            for item in items:
                await slice_of(item, args.duration / args.rounds, samples[item.name])

    run_loop(everything())
    return samples


def report(samples: dict[str, Sample], args: argparse.Namespace) -> bool:
    rest = next(iter(samples.values())).requests_per_second
    print(f"\nget-run through each protocol: {args.duration:g} s each in {args.rounds} slices, "
          f"{args.concurrency} connections, 1 server process, SQLite\n")
    print(f"{'protocol':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'vs REST':>8} {'errors':>7}")
    met = True
    for index, (name, sample) in enumerate(samples.items()):
        ratio = sample.requests_per_second / rest if rest else 0.0
        errors = sum(sample.errors.values())
        print(
            f"{name:<26} {sample.requests_per_second:>8.0f} {sample.percentile_ms(0.5):>8.2f} "
            f"{sample.percentile_ms(0.99):>8.2f} {sample.cpu_us_per_request:>11.0f} {ratio:>7.2f}x {errors:>7}"
        )
        if index and (ratio < RATIO_TARGET or errors):
            met = False
    print(f"\ntarget: MCP and A2A at >= {RATIO_TARGET}x REST's requests/s, without errors: {'met' if met else 'NOT met'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per protocol")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    api_key = secrets.token_urlsafe(24)
    env_overrides, auth = service_overrides(api_key)
    with tempfile.TemporaryDirectory(prefix="protocol-overhead-") as workdir:
        database_url = f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}"
        env = service_env(database_url, None, LOG_LEVEL="WARNING", REDIS_URL="", **env_overrides)
        server = ApiServer(env, Path(workdir), "service", command=[sys.executable, "-m", "backend.app.main"])
        server.start()
        try:
            run_id = run_loop(finished_run(server.base_url, auth))
            items = protocols(run_id, auth)
            run_loop(check_answers(server.base_url, items, run_id))
            met = report(measure(server, items, args), args)
        finally:
            server.stop()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
