"""The API keeps its own contract: what the schema allows is served (never a 500), what it does
not allow answers a documented 4xx naming the field, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from backend.app.main import create_app


async def new_task(client: httpx.AsyncClient, **body: object) -> dict:
    response = await client.post("/tasks/", json={"title": "slugify", "description": "titles to slugs", **body})
    assert response.status_code == 201, response.text
    return response.json()


def fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {error["field"] for error in response.json()["errors"]}


async def test_nul_characters_are_refused_naming_the_field(client) -> None:
    task = await new_task(client)
    assert fields(await client.post("/tasks/", json={"title": "a\u0000b"})) == {"title"}
    assert fields(await client.post("/tasks/", json={"title": "ok", "description": "x\u0000"})) == {"description"}
    assert fields(await client.patch(f"/tasks/{task['id']}", json={"config": {"models": {"bob": "gpt\u0000"}}})) == {
        "config.models.bob"
    }
    assert fields(await client.get("/tasks/", params={"q": "\u0000"})) == {"q"}
    assert fields(await client.get("/tasks/", params={"status": "queued\u0000"})) == {"status"}
    assert fields(await client.get("/runs/", params={"status": "\u0000"})) == {"status"}
    run = await client.post("/runs/", json={"task_id": task["id"], "label": "a\u0000"})
    assert fields(run) == {"label"}
    run = (await client.post("/runs/", json={"task_id": task["id"], "notes": "fine"})).json()
    assert fields(await client.patch(f"/runs/{run['id']}", json={"notes": "\u0000"})) == {"notes"}
    assert fields(await client.post(f"/runs/{run['id']}/approve", json={"comment": "\u0000"})) == {"comment"}
    assert fields(await client.post(f"/runs/{run['id']}/reject", json={"feedback": "\u0000"})) == {"feedback"}
    assert fields(await client.get(f"/runs/{run['id']}/artifacts/a%00b.py")) == {"name"}
    # Nothing half-stored, and the search still finds only real matches.
    listed = (await client.get("/tasks/", params={"q": "slug"})).json()
    assert listed["total"] == 1


async def test_schema_allowed_values_and_their_limits(client) -> None:
    task = await new_task(client, config={"max_rounds": 3, "auto_approve_plan": True})
    reset = await client.patch(f"/tasks/{task['id']}", json={"config": None})
    assert reset.status_code == 200, reset.text
    assert reset.json()["config"] == {}
    for path in ("/tasks/", "/runs/"):
        assert fields(await client.get(path, params={"offset": 2**63})) == {"offset"}
        assert fields(await client.get(path, params={"offset": 2**31})) == {"offset"}
        assert (await client.get(path, params={"offset": 2**31 - 1})).status_code == 200
    run = (await client.post("/runs/", json={"task_id": task["id"]})).json()
    assert fields(await client.get(f"/runs/{run['id']}/logs", params={"after": 2**63})) == {"after"}
    assert (await client.get(f"/runs/{run['id']}/logs", params={"after": 2**63 - 1})).json()["items"] == []
    assert fields(await client.get(f"/runs/{run['id']}/events", params={"after": 2**63})) == {"after"}
    assert fields(
        await client.get(f"/runs/{run['id']}/events", headers={"Last-Event-ID": "99999999999999999999"})
    ) == {"Last-Event-ID"}


async def test_the_schema_says_what_is_refused(client) -> None:
    task = await new_task(client)
    assert fields(await client.patch(f"/tasks/{task['id']}", json={"title": None})) == {"title"}
    assert fields(await client.patch(f"/tasks/{task['id']}", json={"title": "   "})) == {"title"}
    assert fields(await client.post("/tasks/", json={"title": "x", "config": {"auto_approve_plan": "yes"}})) == {
        "config.auto_approve_plan"
    }
    assert fields(await client.post("/tasks/", json={"title": "x", "config": {"allow_concurrent_runs": 0.0}})) == {
        "config.allow_concurrent_runs"
    }
    assert fields(await client.post("/tasks/", json={"title": "x", "config": {"models": {"bob": "\u001d"}}})) == {
        "config.models.bob"
    }
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    title = schema["TaskUpdate"]["properties"]["title"]
    assert title.get("type") == "string" and "pattern" in title, title
    assert schema["TaskConfig"]["properties"]["auto_approve_plan"]["anyOf"][0] == {"type": "boolean"}


async def test_malformed_requests_get_documented_answers(client) -> None:
    task = await new_task(client)
    not_utf8 = await client.post("/tasks/", content=b'{"title": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert fields(not_utf8) == {"body"}
    deep = "[" * 1000 + "]" * 1000
    assert fields(await client.post("/tasks/", content=deep, headers={"content-type": "application/json"})) == {"body"}
    packed = await client.post(
        "/tasks/",
        content=gzip.compress(json.dumps({"title": "x"}).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert packed.status_code == 415, packed.text
    refused = await client.put(f"/tasks/{task['id']}", json={"title": "x"})
    assert refused.status_code == 405
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE"}
    weak = await client.patch(f"/tasks/{task['id']}", json={"title": "new"}, headers={"If-Match": 'W/"1"'})
    assert weak.status_code == 412, weak.text
    strong = await client.patch(f"/tasks/{task['id']}", json={"title": "new"}, headers={"If-Match": '"1"'})
    assert strong.status_code == 200, strong.text


async def test_concurrent_writers_with_one_etag_get_one_success(client) -> None:
    """The version check and the write are one atomic step: of 20 writers holding ETag "1",
    exactly one wins and the rest answer 412; the same for deletes."""
    task = await new_task(client)
    answers = await asyncio.gather(
        *(client.patch(f"/tasks/{task['id']}", json={"description": f"writer {n}"}, headers={"If-Match": '"1"'}) for n in range(20))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [412] * 19, codes
    winner = next(answer.json() for answer in answers if answer.status_code == 200)
    stored = (await client.get(f"/tasks/{task['id']}")).json()
    assert (stored["version"], stored["description"]) == (2, winner["description"])

    other = await new_task(client)
    answers = await asyncio.gather(
        *(client.delete(f"/tasks/{other['id']}", headers={"If-Match": '"1"'}) for _ in range(20))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(204) == 1 and set(codes) <= {204, 404, 412}, codes


def test_websocket_cursor_outside_the_event_numbers_closes_with_4422(settings) -> None:
    with TestClient(create_app(settings)) as http:
        task = http.post("/tasks/", json={"title": "x"}).json()
        run = http.post("/runs/", json={"task_id": task["id"]}).json()
        for cursor in ("-1", "abc", str(2**63)):
            with http.websocket_connect(f"/ws/runs/{run['id']}?after={cursor}") as socket:
                with pytest.raises(WebSocketDisconnect) as closed:
                    socket.receive_text()
            assert closed.value.code == 4422, cursor


async def test_an_unexpected_error_is_one_500_problem_and_one_traceback(settings, caplog) -> None:
    app = create_app(settings)

    @app.get("/explode-for-test")
    async def explode() -> None:
        raise RuntimeError("boom")

    app.router.routes.insert(0, app.router.routes.pop())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # raises what the app lets escape
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            caplog.clear()
            answer = await client.get("/explode-for-test")
    assert answer.status_code == 500 and answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == "the server hit an unexpected error; it has been logged"
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1, [record.getMessage() for record in tracebacks]
