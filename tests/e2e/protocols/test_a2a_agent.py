"""The A2A agent, driven by the official SDK's client (JSON-RPC, protocol 1.0) and by raw 0.3
JSON-RPC calls, against the real uvicorn process of ``conftest``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_data_parts, get_message_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError, UnsupportedOperationError

from tests.e2e.conftest import ApiServer
from tests.e2e.protocols.conftest import ALICE, BOB

pytestmark = pytest.mark.slow

INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED


@asynccontextmanager
async def a2a_client(server: ApiServer, key: str | None, *, streaming: bool = True) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        client = await ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create_from_url(
            server.base_url
        )
        yield client


def user_message(text: str, task_id: str | None = None) -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    if task_id:
        message.task_id = task_id
    return SendMessageRequest(message=message)


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]


def final_state(events: list[StreamResponse]) -> int:
    updates = [event.status_update for event in events if event.HasField("status_update")]
    return updates[-1].status.state


async def test_the_agent_card_is_discovered_at_both_well_known_paths(server: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        current = await http.get("/.well-known/agent-card.json")
        legacy = await http.get("/.well-known/agent.json")
        card = await A2ACardResolver(http, server.base_url).get_agent_card()
    assert current.status_code == legacy.status_code == 200  # no key needed to discover the agent
    assert current.json() == legacy.json()
    assert [skill.name for skill in card.skills] == ["Build and test a piece of software"]
    assert card.capabilities.streaming
    assert {(item.protocol_version, item.url) for item in card.supported_interfaces} == {
        ("1.0", f"{server.base_url}/a2a"),
        ("0.3", f"{server.base_url}/a2a"),
    }
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert card.security_schemes["apiKey"].api_key_security_scheme.name == "X-API-Key"
    # The 0.3 fields are there for older peers.
    assert legacy.json()["url"] == f"{server.base_url}/a2a" and legacy.json()["protocolVersion"] == "0.3"


async def test_calls_without_a_valid_key_are_refused(server: ApiServer) -> None:
    async with a2a_client(server, None) as client:
        with pytest.raises(A2AClientError, match="401"):
            await client.get_task(GetTaskRequest(id=str(uuid.uuid4())))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_body_nested_too_deeply_is_a_parse_error_not_an_internal_one(server: ApiServer) -> None:
    """JSON-RPC says -32700 for a body that does not parse; one nested deeper than the decoder
    goes used to reach the SDK's catch-all (-32603, and a traceback in the log per request)."""
    deep = '{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": ' + "[" * 100_000 + "]" * 100_000 + "}"
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {ALICE}"}) as http:
        response = await http.post("/a2a", content=deep, headers={"content-type": "application/json"})
        plain = await http.post("/a2a", content="{oops", headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32700, response.text
    assert plain.json()["error"]["code"] == -32700, plain.text  # still the SDK's own answer
    assert "maximum recursion depth" not in server.log_tail(400)


async def test_a_streamed_task_asks_for_the_plan_then_completes_after_approval(server: ApiServer) -> None:
    async with a2a_client(server, ALICE) as client:
        planning = await collect(client.send_message(user_message("write fizzbuzz(n)")))
        task = planning[0].task
        waiting = [event.status_update for event in planning if event.HasField("status_update")][-1]

        building = await collect(client.send_message(user_message("approve", task.id)))
        done = await client.get_task(GetTaskRequest(id=task.id))

    assert task.status.state == TaskState.TASK_STATE_SUBMITTED and task.context_id
    assert waiting.status.state == INPUT_REQUIRED
    assert "approve" in get_message_text(waiting.status.message)
    assert get_data_parts(waiting.status.message.parts)[0]["summary"]
    assert any(event.artifact_update.artifact.name == "plan.json" for event in planning)

    assert final_state(building) == TaskState.TASK_STATE_COMPLETED
    streamed = {event.artifact_update.artifact.name for event in building if event.HasField("artifact_update")}
    assert {"review.md", "sandbox-report.json"} <= streamed and any(name.endswith(".py") for name in streamed)
    working = [event.status_update for event in building if event.HasField("status_update")]
    assert any(get_message_text(update.status.message).startswith("alex") for update in working)

    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    code = next(artifact for artifact in done.artifacts if artifact.name.endswith(".py") and "test" not in artifact.name)
    assert "def " in code.parts[0].text


async def test_a_reply_with_feedback_replans_and_a_task_can_be_cancelled(server: ApiServer) -> None:
    async with a2a_client(server, ALICE, streaming=False) as client:
        first = [event.task async for event in client.send_message(user_message("write fizzbuzz(n)"))][0]
        replanned = [event.task async for event in client.send_message(user_message("make it a generator", first.id))][0]
        cancelled = await client.cancel_task(CancelTaskRequest(id=first.id))
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=first.id))
        with pytest.raises(UnsupportedOperationError, match='cancelled'):  # a finished task takes no more messages
            [event async for event in client.send_message(user_message("approve", first.id))]

    # message/send answers once the task needs input again: the new plan.
    assert first.status.state == INPUT_REQUIRED
    assert replanned.id == first.id and replanned.status.state == INPUT_REQUIRED
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_client_that_disconnected_resubscribes_and_follows_the_task(server: ApiServer) -> None:
    async with a2a_client(server, ALICE) as client:
        stream = client.send_message(user_message("write fizzbuzz(n)"))
        task = (await anext(stream)).task
        await stream.aclose()  # the connection drops mid-stream

        resumed = await collect(client.subscribe(SubscribeToTaskRequest(id=task.id)))
        building = await collect(client.send_message(user_message("yes", task.id)))
        with pytest.raises(UnsupportedOperationError):  # nothing left to follow on a finished task
            await collect(client.subscribe(SubscribeToTaskRequest(id=task.id)))

    assert resumed[0].task.id == task.id  # the task as it is now, then what follows
    states = [resumed[0].task.status.state] + [e.status_update.status.state for e in resumed if e.HasField("status_update")]
    assert states[-1] == INPUT_REQUIRED
    assert final_state(building) == TaskState.TASK_STATE_COMPLETED


async def test_a_key_cannot_see_or_steer_another_keys_tasks(server: ApiServer) -> None:
    async with a2a_client(server, ALICE, streaming=False) as alice:
        task = [event.task async for event in alice.send_message(user_message("alice's secret project"))][0]
        async with a2a_client(server, BOB, streaming=False) as bob:
            with pytest.raises(TaskNotFoundError):
                await bob.get_task(GetTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await bob.cancel_task(CancelTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                [event async for event in bob.send_message(user_message("approve", task.id))]
            bobs = await bob.list_tasks(ListTasksRequest(page_size=100))
        still = await alice.get_task(GetTaskRequest(id=task.id))
        waiting = await alice.list_tasks(ListTasksRequest(context_id=task.context_id, status=INPUT_REQUIRED))
        await alice.cancel_task(CancelTaskRequest(id=task.id))
        with pytest.raises(InvalidParamsError):
            await alice.list_tasks(ListTasksRequest(page_size=1000))
    assert still.status.state == INPUT_REQUIRED
    assert task.id not in {item.id for item in bobs.tasks}
    assert [item.id for item in waiting.tasks] == [task.id] and waiting.total_size == 1


async def test_the_0_3_method_names_still_work(server: ApiServer) -> None:
    headers = {"Authorization": f"Bearer {ALICE}"}

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": params}
        response = await http.post("/a2a", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    message = {"kind": "message", "role": "user", "messageId": "m-1", "parts": [{"kind": "text", "text": "fizzbuzz"}]}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        sent = await call("message/send", {"message": message, "configuration": {"blocking": True}})
        task_id = sent["result"]["id"]
        got = await call("tasks/get", {"id": task_id})
        cancelled = await call("tasks/cancel", {"id": task_id})
        missing = await call("tasks/get", {"id": str(uuid.uuid4())})

    assert sent["result"]["kind"] == "task" and sent["result"]["status"]["state"] == "input-required"
    assert got["result"]["status"]["state"] == "input-required"
    assert cancelled["result"]["status"]["state"] == "canceled"
    assert missing["error"]["code"] == -32001  # TaskNotFoundError

