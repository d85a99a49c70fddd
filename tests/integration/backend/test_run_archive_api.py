"""GET /runs/{id}/archive: a run's artifacts as one zip, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import zipfile

from tests.integration.backend.conftest import start_run, wait_for_status
from tests.integration.backend.test_tasks_api import assert_problem

ALICE_KEY, BOB_KEY = "alice-archive-key-1", "bob-archive-key-2"


async def test_archive_holds_every_artifact_of_the_run(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app()
    _, run = await start_run(client, config={"auto_approve_plan": True})
    done = await wait_for_status(client, run["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]

    response = await client.get(f"/runs/{run['id']}/archive")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    folder = f"mgx-run-1-{run['id'][:8]}"
    assert response.headers["content-disposition"] == f'attachment; filename="{folder}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        contents = {name: archive.read(name) for name in archive.namelist()}
    names = sorted(artifact["name"] for artifact in done["artifacts"])
    assert sorted(contents) == [f"{folder}/{name}" for name in names]
    for name in names:
        raw = await client.get(f"/runs/{run['id']}/artifacts/{name}")
        assert contents[f"{folder}/{name}"] == raw.content


async def test_archive_of_a_run_without_artifacts_is_an_empty_zip(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(runner_workers=0)
    _, run = await start_run(client)
    response = await client.get(f"/runs/{run['id']}/archive")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == []


async def test_archive_of_another_keys_run_or_an_unknown_run_is_404(run_app) -> None:  # type: ignore[no-untyped-def]
    client = await run_app(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}", runner_workers=0)
    alice, bob = {"X-API-Key": ALICE_KEY}, {"X-API-Key": BOB_KEY}
    task = (await client.post("/tasks/", json={"title": "alice's"}, headers=alice)).json()
    run = (await client.post("/runs/", json={"task_id": task["id"]}, headers=alice)).json()

    assert (await client.get(f"/runs/{run['id']}/archive", headers=alice)).status_code == 200
    assert_problem(await client.get(f"/runs/{run['id']}/archive", headers=bob), 404)
    assert_problem(await client.get("/runs/00000000-0000-0000-0000-000000000000/archive", headers=alice), 404)
    assert (await client.get(f"/runs/{run['id']}/archive")).status_code == 401
