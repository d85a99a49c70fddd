"""Live events over SSE and WebSocket, on SQLite and PostgreSQL, with the app served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
import websockets
from mgx_agent.testing.fake_llm import FakeLLMServer
from sqlalchemy.engine import URL

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.integration.backend.conftest import FAST_RUNNER_SETTINGS, fake_llm_config
from tests.integration.backend.events_support import (
    LiveApp,
    assert_contiguous,
    collect_sse,
    create_queued_run,
    produce_events,
    read_sse,
    serve,
)


@pytest.fixture
async def live_app(database_url: URL, fake_llm: FakeLLMServer):  # type: ignore[no-untyped-def]
    """Start the app under uvicorn with settings overrides (no runner workers unless asked)."""
    stack = []

    async def start(**overrides: object) -> LiveApp:
        values = {**FAST_RUNNER_SETTINGS, "runner_workers": 0, **overrides}
        app = create_app(make_settings(database_url, **values), fake_llm_config(fake_llm))
        context = serve(app)
        live = await context.__aenter__()
        stack.append(context)
        return live

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


async def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_replay_then_live_has_no_gap_or_duplicate_under_concurrent_production(live_app) -> None:
    live = await live_app()
    run = await create_queued_run(live.http)
    run_id = run["id"]

    async def subscriber(after: int, delay: float) -> list:
        await asyncio.sleep(delay)
        return await collect_sse(live.http, run_id, after=after)

    async def produce_then_cancel() -> None:
        await asyncio.gather(
            produce_events(live.app, run_id, 120, "a"), produce_events(live.app, run_id, 120, "b")
        )
        assert (await live.http.post(f"/runs/{run_id}/cancel")).status_code == 200

    subscribers = [asyncio.create_task(subscriber(after, delay)) for after, delay in ((0, 0), (0, 0.05), (5, 0.1), (0, 0.2))]
    await produce_then_cancel()
    results = await asyncio.wait_for(asyncio.gather(*subscribers), 30)
    # run.created, 240 logs, run.status cancelled, run.cancelled
    last = 1 + 240 + 2
    for (after, _), messages in zip(((0, 0), (0, 0.05), (5, 0.1), (0, 0.2)), results, strict=True):
        assert_contiguous(messages, after + 1, last)
        assert messages[-1].event == "run.cancelled"
    logged = (await live.http.get(f"/runs/{run_id}/logs", params={"limit": 1000})).json()["items"]
    assert [(item["seq"], item["type"], item["data"]) for item in logged] == [
        (message.seq, message.event, message.data["data"]) for message in results[0]
    ]
    await wait_until(lambda: live.app.state.events.subscriber_count == 0)


async def test_resume_from_last_event_id_header_wins_over_after(live_app) -> None:
    live = await live_app()
    run = await create_queued_run(live.http)
    await produce_events(live.app, run["id"], 10, "a")
    await live.http.post(f"/runs/{run['id']}/cancel")
    resumed = await collect_sse(live.http, run["id"], after=0, headers={"Last-Event-ID": "7"})
    assert_contiguous(resumed, 8, 13)
    by_query = await collect_sse(live.http, run["id"], after=11)
    assert_contiguous(by_query, 12, 13)


async def test_finished_run_stream_replays_and_closes_then_answers_204(live_app) -> None:
    live = await live_app()
    run = await create_queued_run(live.http)
    await live.http.post(f"/runs/{run['id']}/cancel")
    messages = await collect_sse(live.http, run["id"])
    assert [message.event for message in messages] == ["run.created", "run.status", "run.cancelled"]
    done = await live.http.get(f"/runs/{run['id']}/events", headers={"Last-Event-ID": "3"})
    assert done.status_code == 204
    missing = await live.http.get(f"/runs/{uuid.uuid4()}/events")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_real_run_streams_every_event_through_completion(live_app) -> None:
    live = await live_app(runner_workers=1)
    run = await create_queued_run(live.http, {"auto_approve_plan": True})
    messages = await collect_sse(live.http, run["id"])
    assert messages[-1].event == "run.completed"
    logged = (await live.http.get(f"/runs/{run['id']}/logs", params={"limit": 1000})).json()["items"]
    assert_contiguous(messages, 1, logged[-1]["seq"])
    assert {"run.plan_ready", "agent.message", "artifact.created", "run.usage"} <= {m.event for m in messages}


async def test_slow_subscriber_overflows_into_the_database_and_misses_nothing(live_app) -> None:
    live = await live_app(events_subscriber_queue=4)
    run = await create_queued_run(live.http)
    events = live.app.state.events
    stalled = await events.subscribe_run(uuid.UUID(run["id"]), 0)
    fast_task = asyncio.create_task(collect_sse(live.http, run["id"]))
    await wait_until(lambda: events.subscriber_count == 2)

    started = time.perf_counter()
    await produce_events(live.app, run["id"], 200, "a")
    producing = time.perf_counter() - started
    await live.http.post(f"/runs/{run['id']}/cancel")

    # The stalled subscriber never read: its queue stayed bounded and it fell back to the log.
    assert stalled.overflows > 0 and len(stalled._pending) <= 4
    received = []
    while not received or received[-1].type != "run.cancelled":
        received.extend(await stalled.next_batch())
    assert [event.seq for event in received] == list(range(1, 204))
    stalled.close()
    fast = await asyncio.wait_for(fast_task, 20)
    assert_contiguous(fast, 1, 203)
    assert producing < 20


async def test_slow_http_subscriber_receives_every_event(live_app) -> None:
    live = await live_app(events_subscriber_queue=2)
    run = await create_queued_run(live.http)
    received = []

    async def slow_reader() -> None:
        async with live.http.stream("GET", f"/runs/{run['id']}/events", timeout=30) as response:
            async for message in read_sse(response):
                received.append(message)
                if len(received) % 20 == 0:
                    await asyncio.sleep(0.05)

    reader = asyncio.create_task(slow_reader())
    await produce_events(live.app, run["id"], 150, "a")
    await live.http.post(f"/runs/{run['id']}/cancel")
    await asyncio.wait_for(reader, 30)
    assert_contiguous(received, 1, 153)


async def test_client_disconnect_frees_the_subscription(live_app) -> None:
    live = await live_app()
    run = await create_queued_run(live.http)
    async with live.http.stream("GET", f"/runs/{run['id']}/events") as response:
        async for message in read_sse(response):
            assert message.event == "run.created"
            break
        assert live.app.state.events.subscriber_count == 1
    await wait_until(lambda: live.app.state.events.subscriber_count == 0, timeout=2)


async def test_deltas_are_streamed_without_id_and_can_be_switched_off(live_app, fake_llm: FakeLLMServer) -> None:
    # Deltas are live only: each model call takes a moment, so the run is still streaming when
    # the subscriber below has connected (an instant fake could finish the run before that).
    fake_llm.latency_seconds = 0.2
    live = await live_app(runner_workers=1)
    run = await create_queued_run(live.http, {"auto_approve_plan": True, "stream_deltas": True})
    messages = await collect_sse(live.http, run["id"])
    deltas = [message for message in messages if message.event == "agent.delta"]
    assert deltas and all(message.id is None and message.seq is None for message in deltas)
    assert deltas[0].data["data"]["role"] and "text" in deltas[0].data["data"]
    assert_contiguous(messages, 1, max(m.seq for m in messages if m.seq is not None))
    logged = (await live.http.get(f"/runs/{run['id']}/logs", params={"limit": 1000})).json()["items"]
    assert "agent.delta" not in {item["type"] for item in logged}

    quiet = await live_app(runner_workers=1, mgx_stream_deltas=False)
    run = await create_queued_run(quiet.http, {"auto_approve_plan": True, "stream_deltas": True})
    messages = await collect_sse(quiet.http, run["id"])
    assert messages[-1].event == "run.completed"
    assert "agent.delta" not in {message.event for message in messages}


async def test_websocket_unknown_ids_close_with_4404(live_app) -> None:
    live = await live_app()
    for path in (f"/ws/runs/{uuid.uuid4()}", f"/ws/tasks/{uuid.uuid4()}", "/ws/runs/not-a-uuid"):
        async with websockets.connect(live.ws_url + path) as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd.code == 4404, path


async def test_websocket_run_stream_resumes_and_closes_after_the_terminal_event(live_app) -> None:
    live = await live_app(events_keepalive_seconds=0.2)
    run = await create_queued_run(live.http)
    async with websockets.connect(f"{live.ws_url}/ws/runs/{run['id']}?after=0") as socket:
        first = json.loads(await socket.recv())
        assert (first["seq"], first["type"]) == (1, "run.created")
        assert json.loads(await asyncio.wait_for(socket.recv(), 2)) == {"type": "ping"}
        await produce_events(live.app, run["id"], 5, "a")
        await live.http.post(f"/runs/{run['id']}/cancel")
        rest = []
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 5))
                if message["type"] != "ping":
                    rest.append(message)
        assert [message["seq"] for message in rest] == list(range(2, 9))
        assert rest[-1]["type"] == "run.cancelled"
    async with websockets.connect(f"{live.ws_url}/ws/runs/{run['id']}?after=6") as socket:
        tail = [json.loads(item) async for item in socket]
        assert [message["seq"] for message in tail] == [7, 8]


async def test_websocket_task_stream_follows_every_run_of_the_task(live_app) -> None:
    live = await live_app()
    task = (await live.http.post("/tasks/", json={"title": "t", "config": {"allow_concurrent_runs": True}})).json()
    async with websockets.connect(f"{live.ws_url}/ws/tasks/{task['id']}") as socket:
        await wait_until(lambda: live.app.state.events.subscriber_count == 1)
        first = (await live.http.post("/runs/", json={"task_id": task["id"]})).json()
        second = (await live.http.post("/runs/", json={"task_id": task["id"]})).json()
        await produce_events(live.app, first["id"], 3, "a")
        await live.http.post(f"/runs/{second['id']}/cancel")
        seen: dict[str, list[int]] = {first["id"]: [], second["id"]: []}
        while len(seen[first["id"]]) < 4 or len(seen[second["id"]]) < 3:
            message = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert message["task_id"] == task["id"]
            seen[message["run_id"]].append(message["seq"])
        assert seen == {first["id"]: [1, 2, 3, 4], second["id"]: [1, 2, 3]}


async def test_shutdown_closes_open_streams(database_url: URL, fake_llm: FakeLLMServer) -> None:
    app = create_app(make_settings(database_url, runner_workers=0), fake_llm_config(fake_llm))
    async with serve(app) as live:
        run = await create_queued_run(live.http)
        client = httpx.AsyncClient(base_url=live.base_url)
        request = client.build_request("GET", f"/runs/{run['id']}/events")
        response = await client.send(request, stream=True)
        reader = asyncio.create_task(response.aread())
        await wait_until(lambda: app.state.events.subscriber_count == 1)
        started = time.monotonic()
    # serve() stopped uvicorn: the stream ended instead of holding shutdown open.
    assert time.monotonic() - started < 5
    await asyncio.wait_for(reader, 5)
    await client.aclose()
    assert app.state.events.subscriber_count == 0


async def test_an_idle_stream_gets_a_keepalive_comment_every_interval(live_app) -> None:
    live = await live_app(events_keepalive_seconds=0.2)
    run = await create_queued_run(live.http)
    comments = []

    async def read_comments() -> None:
        async with live.http.stream("GET", f"/runs/{run['id']}/events") as response:
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    comments.append(line)
                    if len(comments) == 2:
                        return

    await asyncio.wait_for(read_comments(), 5)
    assert comments == [": ping", ": ping"]

