"""The floor under a run: the same model calls and the same rows as a demo run, with nothing in
between. Started by ``bench/runs_throughput.py`` in its own process (so its CPU is its own):

    python bench/run_floor.py DATABASE_URL LLM_BASE_URL RUNS

``RUNS`` runs at once, each: a claim (one UPDATE), five Chat Completions calls through one bare
aiohttp session, after each reply one transaction with raw asyncpg that appends the reply's
events (three rows), stores an artifact for the code and test replies and updates the run's
usage and event counter, then a transaction for ``running`` and one for ``completed``. Prints
one JSON line: CPU seconds and wall seconds of the measured part.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import aiohttp
import asyncpg

ACTIONS = ("AnalyzeTask", "DraftPlan", "WriteCode", "WriteTest", "ReviewCode")
ARTIFACTS = {"WriteCode": "main.py", "WriteTest": "test_main.py"}


async def prepare(pool: asyncpg.Pool, runs: int) -> list[uuid.UUID]:
    run_ids = [uuid.uuid4() for _ in range(runs)]
    task_ids = [uuid.uuid4() for _ in range(runs)]
    async with pool.acquire() as connection:
        await connection.execute(
            """INSERT INTO tasks (id, title, description, config, status, total_runs, successful_runs,
                   failed_runs, created_at, updated_at, version)
               SELECT t, 'floor', '', '{}'::jsonb, 'queued', 1, 0, 0, now(), now(), 1 FROM unnest($1::uuid[]) AS t""",
            task_ids,
        )
        await connection.execute(
            """INSERT INTO runs (id, task_id, number, status, overrides, usage, timings, cancel_requested,
                   attempt, next_event_seq, created_at, queued_at, updated_at, version)
               SELECT r, t, 1, 'queued', '{}', '{}', '{}', false, 0, 1, now(), now(), now(), 1
               FROM unnest($1::uuid[], $2::uuid[]) AS ids(r, t)""",
            run_ids,
            task_ids,
        )
    return run_ids


async def status(pool: asyncpg.Pool, run_id: uuid.UUID, new_status: str) -> None:
    async with pool.acquire() as connection, connection.transaction():
        seq = await connection.fetchval(
            "UPDATE runs SET status = $2, next_event_seq = next_event_seq + 1, updated_at = now(), "
            "version = version + 1 WHERE id = $1 RETURNING next_event_seq - 1",
            run_id,
            new_status,
        )
        await connection.execute(
            "INSERT INTO run_events (run_id, seq, type, data, created_at) VALUES ($1, $2, 'run.status', $3, now())",
            run_id,
            seq,
            json.dumps({"status": new_status}),
        )


async def reply(pool: asyncpg.Pool, run_id: uuid.UUID, action: str, content: str, usage: dict) -> None:
    async with pool.acquire() as connection, connection.transaction():
        first = await connection.fetchval(
            "UPDATE runs SET next_event_seq = next_event_seq + 3, usage = $2, updated_at = now(), "
            "version = version + 1 WHERE id = $1 RETURNING next_event_seq - 3",
            run_id,
            json.dumps(usage),
        )
        events = [
            ("phase.started", {"action": action}),
            ("agent.message", {"action": action, "content": content}),
            ("phase.completed", {"action": action}),
        ]
        await connection.execute(
            """INSERT INTO run_events (run_id, seq, type, data, created_at)
               SELECT $1, s, t, d::jsonb, now() FROM unnest($2::bigint[], $3::text[], $4::text[]) AS e(s, t, d)""",
            run_id,
            [first + index for index in range(len(events))],
            [kind for kind, _ in events],
            [json.dumps(data) for _, data in events],
        )
        if action in ARTIFACTS:
            body = content.encode()
            await connection.execute(
                """INSERT INTO artifacts (id, run_id, name, media_type, size, sha256, content, created_at)
                   VALUES ($1, $2, $3, 'text/x-python', $4, '', $5, now())
                   ON CONFLICT (run_id, name) DO UPDATE SET content = excluded.content, size = excluded.size""",
                uuid.uuid4(),
                run_id,
                ARTIFACTS[action],
                len(body),
                body,
            )


async def one_run(pool: asyncpg.Pool, session: aiohttp.ClientSession, url: str, run_id: uuid.UUID) -> None:
    await status(pool, run_id, "planning")
    usage: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0}
    for action in ACTIONS:
        headers = {"X-MGX-Action": action, "X-MGX-Run": str(run_id), "Authorization": "Bearer floor"}
        payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{action} fizzbuzz"}]}
        async with session.post(url, json=payload, headers=headers) as response:
            body = await response.json()
        usage["prompt_tokens"] += body.get("usage", {}).get("prompt_tokens", 0)
        usage["completion_tokens"] += body.get("usage", {}).get("completion_tokens", 0)
        await reply(pool, run_id, action, body["choices"][0]["message"]["content"], usage)
        if action == "DraftPlan":
            await status(pool, run_id, "running")
    await status(pool, run_id, "completed")


async def main(database_url: str, llm_base_url: str, runs: int) -> dict[str, float]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=20)
    try:
        run_ids = await prepare(pool, runs)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
            url = f"{llm_base_url}/chat/completions"
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.gather(*(one_run(pool, session, url, run_id) for run_id in run_ids))
            return {"cpu_seconds": time.process_time() - cpu, "wall_seconds": time.monotonic() - wall}
    finally:
        await pool.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))))
