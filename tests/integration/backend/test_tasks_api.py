"""Tasks API over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

PROBLEM = "application/problem+json"


async def create(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    body.setdefault("title", "Parse ISO-8601 durations")
    return await client.post("/tasks/", json=body)


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:mgx:problem:")
    assert body["title"] and body["detail"] and body["instance"]
    assert "Traceback" not in response.text
    return body


async def test_create_returns_201_with_location_and_etag(client: httpx.AsyncClient) -> None:
    response = await create(client, description="P1DT2H -> timedelta", config={"max_rounds": 3})
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert response.headers["etag"] == '"1"'
    assert task["title"] == "Parse ISO-8601 durations"
    assert task["config"] == {"max_rounds": 3}
    assert task["status"] == "pending"
    assert (task["total_runs"], task["successful_runs"], task["failed_runs"]) == (0, 0, 0)
    assert task["version"] == 1

    fetched = await client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == task
    assert fetched.headers["etag"] == '"1"'


async def test_list_paginates_newest_first_with_total(client: httpx.AsyncClient) -> None:
    for index in range(5):
        assert (await create(client, title=f"task {index}")).status_code == 201
    page = (await client.get("/tasks/", params={"limit": 2, "offset": 1})).json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 1)
    assert [item["title"] for item in page["items"]] == ["task 3", "task 2"]
    assert (await client.get("/tasks/")).json()["limit"] == 50


async def test_list_filters_by_text_and_status(client: httpx.AsyncClient) -> None:
    await create(client, title="Slugify titles", description="unicode aware")
    await create(client, title="Fizzbuzz", description="classic 100% edition")
    await create(client, title="Word count")

    by_title = (await client.get("/tasks/", params={"q": "SLUG"})).json()
    assert [item["title"] for item in by_title["items"]] == ["Slugify titles"]
    by_description = (await client.get("/tasks/", params={"q": "unicode"})).json()
    assert by_description["total"] == 1
    percent_is_literal = (await client.get("/tasks/", params={"q": "100%"})).json()
    assert [item["title"] for item in percent_is_literal["items"]] == ["Fizzbuzz"]
    assert (await client.get("/tasks/", params={"status": "pending"})).json()["total"] == 3
    assert (await client.get("/tasks/", params={"status": "completed"})).json()["total"] == 0


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}])
async def test_list_rejects_bad_pagination(client: httpx.AsyncClient, params: dict) -> None:
    body = assert_problem(await client.get("/tasks/", params=params), 422)
    assert body["errors"][0]["location"] == "query"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "description": "d" * 20_001}, "description"),
        ({"title": "ok", "config": {"max_rounds": 0}}, "config.max_rounds"),
        ({"title": "ok", "config": {"max_rounds": 21}}, "config.max_rounds"),
        ({"title": "ok", "config": {"max_revision_rounds": 6}}, "config.max_revision_rounds"),
        ({"title": "ok", "config": {"budget_usd": -1}}, "config.budget_usd"),
        ({"title": "ok", "config": {"models": {"dave": "gpt-4o"}}}, "config.models.dave"),
        ({"title": "ok", "config": {"temperature_of_mars": 3}}, "config.temperature_of_mars"),
        ({"title": "ok", "owner": "me"}, "owner"),
        ({}, "title"),
    ],
)
async def test_create_validation_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, payload: dict, field: str
) -> None:
    body = assert_problem(await client.post("/tasks/", json=payload), 422)
    assert field in [error["field"] for error in body["errors"]]
    assert (await client.get("/tasks/")).json()["total"] == 0


async def test_title_at_the_limits_is_accepted(client: httpx.AsyncClient) -> None:
    response = await create(client, title="x" * 200, description="d" * 20_000)
    assert response.status_code == 201
    assert len(response.json()["description"]) == 20_000


async def test_non_json_body_is_415_and_invalid_json_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.post("/tasks/", content=b"title=x", headers={"content-type": "text/plain"}), 415
    )
    assert "application/json" in body["detail"]
    invalid = assert_problem(
        await client.post("/tasks/", content=b'{"title": ', headers={"content-type": "application/json"}), 422
    )
    assert invalid["detail"] == "the request body is not valid JSON"
    assert (await client.get("/tasks/")).json()["total"] == 0


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    body = assert_problem(await client.get(f"/tasks/{missing}"), 404)
    assert str(missing) in body["detail"]
    assert_problem(await client.patch(f"/tasks/{missing}", json={"title": "x"}), 404)
    assert_problem(await client.delete(f"/tasks/{missing}"), 404)
    malformed = assert_problem(await client.get("/tasks/not-a-uuid"), 422)
    assert malformed["errors"][0]["field"] == "task_id"


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404)
    wrong = assert_problem(await client.put("/tasks/", json={}), 405)
    assert "PUT" in wrong["detail"]


async def test_patch_updates_fields_and_bumps_version(client: httpx.AsyncClient) -> None:
    task = (await create(client, config={"max_rounds": 3, "auto_approve_plan": True})).json()
    response = await client.patch(
        f"/tasks/{task['id']}",
        json={"description": "now with weeks", "config": {"max_rounds": 7, "auto_approve_plan": None}},
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == task["title"]
    assert updated["description"] == "now with weeks"
    assert updated["config"] == {"max_rounds": 7}
    assert updated["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert updated["updated_at"] >= task["updated_at"]


async def test_patch_validates_merged_config_and_changes_nothing(client: httpx.AsyncClient) -> None:
    task = (await create(client, config={"max_rounds": 3})).json()
    body = assert_problem(await client.patch(f"/tasks/{task['id']}", json={"config": {"max_rounds": 99}}), 422)
    assert body["errors"][0]["field"] == "config.max_rounds"
    assert_problem(await client.patch(f"/tasks/{task['id']}", json={"title": None}), 422)
    assert_problem(await client.patch(f"/tasks/{task['id']}", json={"status": "completed"}), 422)
    current = (await client.get(f"/tasks/{task['id']}")).json()
    assert current["config"] == {"max_rounds": 3}
    assert current["version"] == 1


async def test_if_match_mismatch_is_412(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    url = f"/tasks/{task['id']}"
    assert (await client.patch(url, json={"title": "v2"}, headers={"If-Match": '"1"'})).status_code == 200
    stale = assert_problem(await client.patch(url, json={"title": "v3"}, headers={"If-Match": '"1"'}), 412)
    assert stale["current_etag"] == '"2"'
    assert_problem(await client.delete(url, headers={"If-Match": '"1"'}), 412)
    assert (await client.get(url)).json()["title"] == "v2"
    assert (await client.patch(url, json={"title": "v3"}, headers={"If-Match": "*"})).status_code == 200
    assert (await client.delete(url, headers={"If-Match": '"3"'})).status_code == 204


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    task = (await create(client)).json()
    response = await client.delete(f"/tasks/{task['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/tasks/{task['id']}"), 404)


async def test_idempotent_create_replays_the_same_response(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "create-duration-parser"}
    first = await client.post("/tasks/", json={"title": "Durations"}, headers=headers)
    second = await client.post("/tasks/", json={"title": "Durations"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert (await client.get("/tasks/")).json()["total"] == 1


async def test_idempotency_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert (await client.post("/tasks/", json={"title": "A"}, headers=headers)).status_code == 201
    body = assert_problem(await client.post("/tasks/", json={"title": "B"}, headers=headers), 422)
    assert "different request body" in body["detail"]
    assert (await client.get("/tasks/")).json()["total"] == 1


async def test_concurrent_requests_with_one_idempotency_key_create_one_task(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/tasks/", json={"title": "Once"}, headers=headers) for _ in range(5))
    )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert (await client.get("/tasks/")).json()["total"] == 1


async def test_idempotency_survives_an_app_restart(settings, client: httpx.AsyncClient) -> None:
    from backend.app.main import create_app

    headers = {"Idempotency-Key": "restart-proof"}
    first = await client.post("/tasks/", json={"title": "Durable"}, headers=headers)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as other:
            again = await other.post("/tasks/", json={"title": "Durable"}, headers=headers)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_reads_do_not_wait_for_a_writer(settings, client: httpx.AsyncClient) -> None:
    """Reads run on a read-only connection: on SQLite a deferred transaction, which a writer
    holding the database's write lock does not block (a write transaction would wait up to the
    10 s busy timeout); on PostgreSQL they see the last committed version."""
    from sqlalchemy import update

    from backend.db.engine import create_engine
    from backend.db.models import Task

    task = (await create(client, title="Committed title")).json()
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with engine.begin() as writer:  # on SQLite: BEGIN IMMEDIATE, the write lock
            await writer.execute(update(Task).where(Task.id == uuid.UUID(task["id"])).values(title="uncommitted"))
            one = await asyncio.wait_for(client.get(f"/tasks/{task['id']}"), 3)
            page = await asyncio.wait_for(client.get("/tasks/"), 3)
            await writer.rollback()
    finally:
        await engine.dispose()
    assert one.status_code == 200 and one.json()["title"] == "Committed title"
    assert [item["title"] for item in page.json()["items"]] == ["Committed title"]
