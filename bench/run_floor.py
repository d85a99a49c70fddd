"""The floor under a run: the same model calls and the same rows as a service run, with nothing
in between. Started by ``bench/runs_throughput.py`` in its own process (so its CPU is its own):

    python bench/run_floor.py DATABASE_URL LLM_BASE_URL RUNS JOURNAL.json

``JOURNAL.json`` is one finished service run as the bench read it from the database: its events
(type and data, in order) and its artifacts (name, media type, content). ``RUNS`` runs at once
write exactly those rows, each run:

- its creation: the run row, its first event and the task's counters, one transaction;
- one transaction per status change (the claim, ``running``, the end): the run's status, its
  status events, the task's mirror;
- one Chat Completions call per ``agent.message`` of the journal through one bare aiohttp
  session, and after each reply one transaction with raw asyncpg: the run's counters and usage,
  the events up to the next reply and the artifacts they announce.

Prints one JSON line: CPU seconds and wall seconds of the measured part, and the transactions
per run it made.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

STATUS_EVENTS = {"run.status", "run.approved", "run.completed", "run.failed"}


@dataclass
class Step:
    """One transaction of a run: a model reply's (``action`` set) or a status change's."""

    events: list[tuple[str, str]] = field(default_factory=list)  # (type, data as JSON)
    action: str | None = None
    status: str | None = None
    artifacts: list[tuple[str, str, bytes]] = field(default_factory=list)


def plan_steps(journal: dict[str, Any]) -> list[Step]:
    """Split the journal into the floor's transactions, in order: status events form their own
    step; a reply's step runs from its ``agent.message`` to the next reply or status change."""
    artifacts = {item["name"]: (item["media_type"], bytes.fromhex(item["content"])) for item in journal["artifacts"]}
    steps: list[Step] = []
    for kind, data in journal["events"][1:]:  # the first event (run.created) is the creation's
        if kind in STATUS_EVENTS:
            if not steps or steps[-1].status is None or kind == "run.approved":
                steps.append(Step())
            steps[-1].status = data.get("status") or steps[-1].status or "running"
        elif kind == "agent.message":
            steps.append(Step(action=data.get("action")))
        elif not steps:
            steps.append(Step(status="planning"))
        steps[-1].events.append((kind, json.dumps(data)))
        if kind == "artifact.created" and data["name"] in artifacts:
            media_type, content = artifacts[data["name"]]
            steps[-1].artifacts.append((data["name"], media_type, content))
    return steps


async def create(pool: asyncpg.Pool, run_id: uuid.UUID, task_id: uuid.UUID, first: tuple[str, str]) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """INSERT INTO runs (id, task_id, number, status, overrides, usage, timings, cancel_requested,
                   attempt, next_event_seq, created_at, queued_at, updated_at, version)
               VALUES ($1, $2, 1, 'queued', '{}', '{}', '{}', false, 0, 2, now(), now(), now(), 1)""",
            run_id,
            task_id,
        )
        await connection.execute(
            "INSERT INTO run_events (run_id, seq, type, data, created_at) VALUES ($1, 1, $2, $3::jsonb, now())",
            run_id,
            *first,
        )
        await connection.execute(
            "UPDATE tasks SET total_runs = total_runs + 1, last_run_id = $2, last_run_status = 'queued', "
            "status = 'queued', last_run_at = now(), updated_at = now(), version = version + 1 WHERE id = $1",
            task_id,
            run_id,
        )


async def write(pool: asyncpg.Pool, run_id: uuid.UUID, task_id: uuid.UUID, step: Step, usage: str) -> None:
    async with pool.acquire() as connection, connection.transaction():
        count = len(step.events)
        if step.status is not None:
            first = await connection.fetchval(
                "UPDATE runs SET status = $2, next_event_seq = next_event_seq + $3, updated_at = now(), "
                "version = version + 1 WHERE id = $1 RETURNING next_event_seq - $3",
                run_id,
                step.status,
                count,
            )
        else:
            first = await connection.fetchval(
                "UPDATE runs SET next_event_seq = next_event_seq + $3, usage = $2::jsonb, updated_at = now(), "
                "version = version + 1 WHERE id = $1 RETURNING next_event_seq - $3",
                run_id,
                usage,
                count,
            )
        for name, media_type, content in step.artifacts:
            await connection.execute(
                """INSERT INTO artifacts (id, run_id, name, media_type, size, sha256, content, created_at)
                   VALUES ($1, $2, $3, $4, $5, '', $6, now())
                   ON CONFLICT (run_id, name) DO UPDATE SET content = excluded.content, size = excluded.size""",
                uuid.uuid4(),
                run_id,
                name,
                media_type,
                len(content),
                content,
            )
        await connection.execute(
            """INSERT INTO run_events (run_id, seq, type, data, created_at)
               SELECT $1, s, t, d::jsonb, now() FROM unnest($2::bigint[], $3::text[], $4::text[]) AS e(s, t, d)""",
            run_id,
            [first + index for index in range(count)],
            [kind for kind, _ in step.events],
            [data for _, data in step.events],
        )
        if step.status is not None:
            await connection.execute(
                "UPDATE tasks SET status = $2, last_run_status = $2 WHERE id = $1 AND last_run_id = $3",
                task_id,
                step.status,
                run_id,
            )


async def one_run(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, url: str, task_id: uuid.UUID, journal: dict[str, Any],
    steps: list[Step],
) -> None:
    run_id = uuid.uuid4()
    first_kind, first_data = journal["events"][0]
    await create(pool, run_id, task_id, (first_kind, json.dumps(first_data)))
    usage: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0}
    for step in steps:
        if step.action is not None:
            headers = {"X-MGX-Action": step.action, "X-MGX-Run": str(run_id), "Authorization": "Bearer floor"}
            payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{step.action} fizzbuzz"}]}
            async with session.post(url, json=payload, headers=headers) as response:
                body = await response.json()
            usage["prompt_tokens"] += body.get("usage", {}).get("prompt_tokens", 0)
            usage["completion_tokens"] += body.get("usage", {}).get("completion_tokens", 0)
        await write(pool, run_id, task_id, step, json.dumps(usage))


async def main(database_url: str, llm_base_url: str, runs: int, journal_path: str) -> dict[str, float]:
    with open(journal_path, encoding="utf-8") as handle:
        journal = json.load(handle)
    steps = plan_steps(journal)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=20)
    try:
        task_ids = [uuid.uuid4() for _ in range(runs)]
        async with pool.acquire() as connection:
            await connection.execute(
                """INSERT INTO tasks (id, title, description, config, status, total_runs, successful_runs,
                       failed_runs, created_at, updated_at, version)
                   SELECT t, 'floor', '', '{}'::jsonb, 'pending', 0, 0, 0, now(), now(), 1 FROM unnest($1::uuid[]) AS t""",
                task_ids,
            )
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
            url = f"{llm_base_url}/chat/completions"
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.gather(*(one_run(pool, session, url, task_id, journal, steps) for task_id in task_ids))
            return {
                "cpu_seconds": time.process_time() - cpu,
                "wall_seconds": time.monotonic() - wall,
                "transactions_per_run": 1 + len(steps),
                "replies_per_run": sum(step.action is not None for step in steps),
            }
    finally:
        await pool.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))))
